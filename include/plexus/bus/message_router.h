// -----------------------------------------------------------------------------
// plexus/bus/message_router.h
// -----------------------------------------------------------------------------
//
// MessageRouter is one subscription to a topic whose messages are routed, by their type, to
// separate callbacks (Asterisk's stasis_message_router). It is what a module uses instead of
// one callback with a switch over message types:
//
//   auto router = plexus::MessageRouter::Create(topic);
//   router.AddRoute(kChannelState, [](const ChannelState& cs, const plexus::Message&) { ... });
//   router.AddRoute(kHangup, [](const Hangup& h, const plexus::Message&) { ... });
//   router.SetDefaultRoute([](const plexus::Message& m, bool is_final) { ... });
//
// Routes. Each message goes to at most one route, chosen in this order:
//   1. for a cache update (caching_topic.h), the cache route of the type of the snapshot it
//      carries (AddCacheRoute: typed, `f(const CacheUpdate&, const T* old, const T* new)`, or
//      untyped by the snapshot's MessageType);
//   2. the route of its type (AddRoute: typed, `f(const T&, const Message&)`, or untyped by
//      MessageType, `f(const Message&)` or `f(const Message&, bool is_final)`); a route for
//      CacheUpdateType() takes the cache updates that no cache route took;
//   3. else the first format route whose formats the type offers (AddFormatRoute; format
//      routes never share a format, so "first" is unambiguous);
//   4. else the default route (SetDefaultRoute), if any; else the message is dropped (counted
//      as unrouted).
// This is Asterisk's order (stasis_message_router_add_cache_update before the type routes).
// The final message goes to the route of the subscription-change type if there is one, else
// to the default route (never to a format or cache route), as Asterisk's router does. One
// route per type: a second AddRoute for a type is misuse, as is a second AddCacheRoute for one
// snapshot type, and a format route sharing a format with another. A cache route and a type
// route for the same type do not clash: one takes the type's cache updates, the other its
// snapshots themselves.
//
// Filtering follows Asterisk: the subscription is selective from the start (it gets its own
// subscribe notice and, as every subscription, its final message); each route accepts its
// type (or formats; a cache route, the cache-update type); a default route accepts everything,
// for good. Removing a route does not decline its type: later messages of the type fall to the
// default route (or are dropped).
// Like any subscription, a router hears the other subscriptions' subscribe and unsubscribe
// notices only if it asks: with a route for the subscription-change type (until a default
// route is set, which accepts everything and so stops listening) or, always, with
// SubscriptionOptions::subscription_changes. Such notices go to the route of the
// subscription-change type, else the default route, else are dropped (counted as unrouted);
// the type has no formatter, so no format route takes them.
//
// Dispatch is a lookup: the routes form an immutable table indexed by the type's dense id
// (and the cache routes by the snapshot type's), replaced whole (copy on write) by every route
// change. Delivering a message takes no lock; a router without cache routes never looks at a
// message's payload.
//
// Route changes while messages flow. Adding and removing may be done from any thread,
// including from a route callback, and take effect for the next message dispatched:
//   * From another thread, RemoveRoute (and RemoveCacheRoute, ClearDefaultRoute,
//     RemoveFormatRoute, and SetDefaultRoute replacing a default) returns only once the removed
//     callback is neither running nor able to run again, and has been destroyed: if a dispatch of
//     this router is in progress when the route is removed, the call waits for that dispatch to
//     return. What the callback captured may be freed as soon as the call returns.
//   * From one of this router's own callbacks (the dispatch thread), the call returns at once:
//     waiting would wait for itself. The removed callback is not called again, but when a
//     route removes itself its current invocation is still running (it is the caller); the
//     callback object is destroyed once that dispatch has returned.
//   * So a route callback must not wait for a thread that is removing one of this router's
//     routes (the remover waits for the callback: a deadlock, as with any join). Publishing
//     on a topic counts as waiting for its synchronous callbacks' threads: do not remove a
//     pool or dedicated router's route from a synchronous callback of a topic that the
//     router's routes publish on.
//
// Ordering: a message published after AddRoute (or SetDefaultRoute) returned goes to the new
// route; one published before may or may not (it may be dispatched before or after the
// change). The callback of a route added before a message was published sees what was written
// before the AddRoute call.
//
// Lifecycle is the subscription's (subscription.h): Unsubscribe, then exactly one final
// message (routed as above), then IsDone; Join/UnsubscribeAndJoin wait for it and are misuse
// from a route callback; dropping the owning handle unsubscribes without waiting, the routes
// living until the final message was handled. PublishAndWait(message) publishes on the
// router's topic and waits until the router has handled the message (Topic::PublishAndWait
// with GetSubscription() does the same for any topic forwarding into it).
//
// Failures: a route callback that throws is caught, logged and counted (Stats(): per route and
// in total); the router goes on with the next message.
//
// Congestion limits, queue policy and the delivery mode are the SubscriptionOptions given to
// Create; Stats() carries the subscription's counters plus the router's and each route's. Every
// live router appears in the bus listings (ListRouters and BusStatsText, bus_stats.h).
//
// Cache routes, for a router on a caching topic's output (or a topic it forwards into):
//
//   router.AddCacheRoute(kChannelSnapshot, [](const plexus::CacheUpdate& update,
//                                             const ChannelSnapshot* old_snapshot,
//                                             const ChannelSnapshot* new_snapshot) { ... });
//
// `old_snapshot` is null for a new object, `new_snapshot` for a cleared one; for an aggregate
// update both are the aggregates (update.new_snapshot->Node() is NodeId::None()).
//
// Misuse (reported through plexus::ReportMisuse with the caller's location; the call then
// changes nothing and returns false): a route on an empty router, a null type, an empty
// callback, a duplicate route or cache route, a format route with no format or sharing a
// format.
//
// Thread safety: the handle is thread-compatible as a value (moving and assigning need one
// owner). Its other members may be called from any thread at once, including from the router's
// own callbacks (except the joins). Callbacks of one router never overlap: they run one at a
// time, in the topic's order, like a subscription's.

#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "plexus/bus/caching_topic.h"
#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"
#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"

namespace plexus {

namespace bus_internal {
class RouterCore;
}  // namespace bus_internal

// A route callback: the message, and whether it is the router's final message.
using RouteHandler = std::function<void(const Message& message, bool is_final)>;

enum class RouteKind { kType, kFormat, kDefault, kCache };

// "type", "format", "default" or "cache".
const char* RouteKindName(RouteKind kind) noexcept;

// The counters of one route.
struct RouteStats {
  RouteKind kind = RouteKind::kType;
  // The type's name (a cache route's: its snapshot type's); "json", "text" or "json|text";
  // "default".
  std::string name;
  std::uint64_t calls = 0;   // times its callback was called
  std::uint64_t failed = 0;  // of which threw
};

// A snapshot of a router's counters.
struct MessageRouterStats {
  SubscriptionStats subscription;
  std::uint64_t routed = 0;        // messages handed to a type, format or cache route
  std::uint64_t cache_routed = 0;  // of which to a cache route
  std::uint64_t defaulted = 0;     // messages handed to the default route
  std::uint64_t unrouted = 0;      // messages no route took (dropped)
  std::uint64_t failed = 0;        // route callbacks that threw
  std::vector<RouteStats> routes;  // the current routes: types by name, formats, default
};

class MessageRouter {
 public:
  // An empty handle (no router).
  MessageRouter() noexcept;
  MessageRouter(MessageRouter&& other) noexcept;
  // Unsubscribes the router held before (without waiting), then takes `other`'s.
  MessageRouter& operator=(MessageRouter&& other) noexcept;
  MessageRouter(const MessageRouter&) = delete;
  MessageRouter& operator=(const MessageRouter&) = delete;
  ~MessageRouter();

  // A router subscribed to `topic` with no route yet. `options` are the subscription's
  // (delivery mode, pool, queue policy, congestion limits; types and formats it lists are
  // accepted besides the routes'). A null topic is misuse (reported; an empty handle).
  static MessageRouter Create(const Ref<Topic>& topic, SubscriptionOptions options = {},
                              SourceLocation where = SourceLocation::current());

  explicit operator bool() const noexcept { return core_ != nullptr; }

  // Routes the messages of `type` to `callback(const T&, const Message&)`.
  template <class T, class F>
  requires std::invocable<F&, const T&, const Message&>
  bool AddRoute(const TypedMessageType<T>& type, F&& callback,
                SourceLocation where = SourceLocation::current()) {
    return AddRouteHandler(
        type.get(),
        [type, f = std::forward<F>(callback)](const Message& m, bool) mutable {
          if (const T* value = type.Get(m)) f(*value, m);
        },
        where);
  }
  // Routes the messages of `type` to `callback(const Message&)` or
  // `callback(const Message&, bool is_final)`.
  template <class F>
  requires std::invocable<F&, const Message&> || std::invocable<F&, const Message&, bool>
  bool AddRoute(const MessageType* type, F&& callback,
                SourceLocation where = SourceLocation::current()) {
    return AddRouteHandler(type, ToHandler(std::forward<F>(callback)), where);
  }
  bool AddRouteHandler(const MessageType* type, RouteHandler handler,
                       SourceLocation where = SourceLocation::current());
  // Removes the route of `type` (see the file comment for when this returns). False when
  // there was none (not an error).
  bool RemoveRoute(const MessageType* type, SourceLocation where = SourceLocation::current());
  bool HasRoute(const MessageType* type) const;

  // Routes the cache updates whose snapshot type is `snapshot_type` to
  // `callback(const CacheUpdate& update, const T* old_snapshot, const T* new_snapshot)` (each
  // null when the update has none).
  template <class T, class F>
  requires std::invocable<F&, const CacheUpdate&, const T*, const T*>
  bool AddCacheRoute(const TypedMessageType<T>& snapshot_type, F&& callback,
                     SourceLocation where = SourceLocation::current()) {
    return AddCacheRouteHandler(
        snapshot_type.get(),
        [snapshot_type, f = std::forward<F>(callback)](const Message& m, bool) mutable {
          const CacheUpdate* update = CacheUpdateType().Get(m);
          if (update == nullptr) return;
          f(*update, update->old_snapshot ? snapshot_type.Get(*update->old_snapshot) : nullptr,
            update->new_snapshot ? snapshot_type.Get(*update->new_snapshot) : nullptr);
        },
        where);
  }
  // Routes the cache updates whose snapshot type is `snapshot_type` to
  // `callback(const CacheUpdate&, const Message& update_message)`, `callback(const Message&)`
  // or `callback(const Message&, bool is_final)`.
  template <class F>
  requires std::invocable<F&, const CacheUpdate&, const Message&> ||
      std::invocable<F&, const Message&> || std::invocable<F&, const Message&, bool>
  bool AddCacheRoute(const MessageType* snapshot_type, F&& callback,
                     SourceLocation where = SourceLocation::current()) {
    if constexpr (std::invocable<F&, const CacheUpdate&, const Message&>) {
      return AddCacheRouteHandler(
          snapshot_type,
          [f = std::forward<F>(callback)](const Message& m, bool) mutable {
            if (const CacheUpdate* update = CacheUpdateType().Get(m)) f(*update, m);
          },
          where);
    } else {
      return AddCacheRouteHandler(snapshot_type, ToHandler(std::forward<F>(callback)), where);
    }
  }
  bool AddCacheRouteHandler(const MessageType* snapshot_type, RouteHandler handler,
                            SourceLocation where = SourceLocation::current());
  // Removes the cache route of `snapshot_type` (returns as RemoveRoute does). False when there
  // was none (not an error).
  bool RemoveCacheRoute(const MessageType* snapshot_type,
                        SourceLocation where = SourceLocation::current());
  bool HasCacheRoute(const MessageType* snapshot_type) const;

  // Routes messages whose type has a formatter in `formats` and no route of its own.
  template <class F>
  requires std::invocable<F&, const Message&> || std::invocable<F&, const Message&, bool>
  bool AddFormatRoute(MessageFormats formats, F&& callback,
                      SourceLocation where = SourceLocation::current()) {
    return AddFormatRouteHandler(formats, ToHandler(std::forward<F>(callback)), where);
  }
  bool AddFormatRouteHandler(MessageFormats formats, RouteHandler handler,
                             SourceLocation where = SourceLocation::current());
  // Removes the format route added with exactly `formats`; false when there is none.
  bool RemoveFormatRoute(MessageFormats formats, SourceLocation where = SourceLocation::current());

  // Sets (or replaces: the replaced callback is removed as by RemoveRoute) the default route.
  template <class F>
  requires std::invocable<F&, const Message&> || std::invocable<F&, const Message&, bool>
  bool SetDefaultRoute(F&& callback, SourceLocation where = SourceLocation::current()) {
    return SetDefaultRouteHandler(ToHandler(std::forward<F>(callback)), where);
  }
  bool SetDefaultRouteHandler(RouteHandler handler,
                              SourceLocation where = SourceLocation::current());
  // Removes the default route; false when there was none. The subscription keeps accepting
  // every type (as in Asterisk): such messages are then dropped.
  bool ClearDefaultRoute(SourceLocation where = SourceLocation::current());

  // The subscription's lifecycle (subscription.h).
  bool Unsubscribe(SourceLocation where = SourceLocation::current());
  bool Join(SourceLocation where = SourceLocation::current());
  bool UnsubscribeAndJoin(SourceLocation where = SourceLocation::current());
  bool IsSubscribed() const noexcept;
  bool IsDone() const noexcept;

  // Publishes `message` on the router's topic and waits until the router handled it
  // (Topic::PublishAndWait; misuse from a route callback of a non-synchronous router).
  PublishResult PublishAndWait(const Ref<Message>& message,
                               SourceLocation where = SourceLocation::current());

  // The underlying subscription, for Topic::PublishAndWait and the listings.
  const Subscription& GetSubscription() const noexcept { return subscription_; }
  const std::string& Id() const noexcept { return subscription_.Id(); }
  Ref<Topic> GetTopic() const { return subscription_.GetTopic(); }

  MessageRouterStats Stats() const;

 private:
  template <class F>
  static RouteHandler ToHandler(F&& callback) {
    if constexpr (std::invocable<F&, const Message&, bool>) {
      return RouteHandler(std::forward<F>(callback));
    } else {
      return [f = std::forward<F>(callback)](const Message& m, bool) mutable { f(m); };
    }
  }

  MessageRouter(Subscription subscription, std::shared_ptr<bus_internal::RouterCore> core) noexcept;

  // Declared first so that it is destroyed last: the subscription's callback holds the core
  // too, so the core outlives the handle until the final message was handled.
  std::shared_ptr<bus_internal::RouterCore> core_;
  Subscription subscription_;
};

}  // namespace plexus
