// -----------------------------------------------------------------------------
// plexus/bus/subscription.h
// -----------------------------------------------------------------------------
//
// Subscription is the owning handle of one subscriber of a topic (Asterisk's
// stasis_subscription). Its callback receives the topic's messages in order, one at a time:
//
//   kPool             on a serializer of a thread pool (ThreadPool::Shared() unless given): the
//                     default; 100 000 subscriptions cost memory, not threads.
//   kDedicatedThread  on a thread of its own (Asterisk's default stasis_subscribe).
//   kSynchronous      on the publisher's thread, inside the publish (stasis_subscribe_synchronous).
//
// Lifecycle: the first callback is the subscription's own "subscribe" notice
// (subscription_change.h), unless its filter refuses it: it is queued (or, synchronous, run)
// under the topic's lock as the subscription joins, before any message published on the topic.
// Unsubscribe removes it from the topic — breaking the topic <-> subscription cycle — after
// which exactly one more callback arrives, the final message (the "unsubscribe" notice,
// `is_final` true), after every message queued before it.
//
// The other subscriptions' notices: a subscription hears of the others subscribing and
// unsubscribing (on its topic, and on topics forwarded into it) only if it asks to — with
// SubscriptionOptions::subscription_changes, or with a type filter that accepts
// SubscriptionChangeType() (AcceptType or `accepted_types`; declining it again, or
// AcceptAllTypes, stops them unless the option is set). Asterisk tells every subscriber, so N
// subscriptions made one after another cost N(N+1)/2 deliveries; here they cost N, plus one
// per listener per change.
// Join and UnsubscribeAndJoin return once the final callback has returned; called from the
// subscription's own callback they would wait for themselves, so that is misuse, reported at
// once (never a hang).
//
// Ownership: the handle owns the subscription. Destroying (or assigning over) a subscribed
// handle unsubscribes without waiting; the callback and what it captured are destroyed after
// the final message. Use UnsubscribeAndJoin when the callback uses objects about to go.
//
// Filters (applied when a message is queued, so a change affects later messages only): by
// type (AcceptType; once any type is accepted the subscription is selective) and by format
// (SetAcceptedFormats: messages whose type has one of these formatters). A message passes if
// no filter is set, or if its type is accepted OR it has an accepted format. The final message
// passes every filter.
//
// Congestion: the queue raises an alert when its depth reaches `high_water` and clears it when
// it falls to `low_water` (the executor's alert machinery: SetTaskProcessorAlertHandler and the
// "bus" subsystem count). A bounded queue (`capacity`) either drops its oldest message
// (kDropOldest: the publisher never blocks) or refuses the new one (kRejectNew: Publish
// reports it). Counts of each are in Stats().
//
// A callback that throws is caught, counted (Stats().failed) and logged; delivery goes on.
//
// Thread safety: the handle is thread-compatible as a value (moving and assigning need one
// owner), but its const members and Unsubscribe, Join, the filter setters and Stats may be
// called from any thread, including from the callback (except the joins, see above).

#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"
#include "plexus/bus/subscription_change.h"
#include "plexus/bus/topic.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"
#include "plexus/exec/thread_pool.h"

namespace plexus {

enum class DeliveryMode { kPool, kDedicatedThread, kSynchronous };

enum class QueuePolicy {
  kUnbounded,   // the queue grows as needed (alerts still fire)
  kDropOldest,  // a full queue drops its oldest message to take the new one
  kRejectNew,   // a full queue refuses the new message (PublishResult::rejected)
};

struct SubscriptionOptions {
  DeliveryMode mode = DeliveryMode::kPool;
  // kPool: the pool whose threads run the callbacks; null: ThreadPool::Shared().
  Ref<ThreadPool> pool;
  QueuePolicy policy = QueuePolicy::kUnbounded;
  // The most messages a bounded queue holds besides the one being handled (ignored by
  // kUnbounded); at least 1.
  std::size_t capacity = 1024;
  // Queue depths that raise and clear the congestion alert.
  std::uint32_t high_water = 500;
  std::uint32_t low_water = 450;
  // Callbacks run per turn on a pool thread before the subscription yields the thread.
  std::uint32_t batch_limit = 256;
  // Filters in force from the start (so even the subscribe notice is filtered).
  std::vector<const MessageType*> accepted_types;
  MessageFormats accepted_formats = MessageFormat::kNone;
  // Hear the other subscriptions' subscribe and unsubscribe notices (see the file comment);
  // a type filter that accepts SubscriptionChangeType() asks for them as well.
  bool subscription_changes = false;
};

// A snapshot of a subscription's counters.
struct SubscriptionStats {
  std::string id;
  std::string topic;
  DeliveryMode mode = DeliveryMode::kPool;
  std::uint64_t queued = 0;      // messages accepted by the filter and queued (or run inline)
  std::uint64_t filtered = 0;    // messages the filter refused
  std::uint64_t dispatched = 0;  // callbacks that ran (notices and final message included)
  std::uint64_t failed = 0;      // callbacks that threw
  std::uint64_t dropped = 0;     // messages dropped by kDropOldest
  std::uint64_t rejected = 0;    // messages refused by kRejectNew
  std::size_t depth = 0;         // messages waiting (and being handled)
  std::size_t max_depth = 0;
  bool alerted = false;
  std::uint32_t high_water = 0;  // the alert is raised at this depth...
  std::uint32_t low_water = 0;   // ...and cleared at this one
  bool subscribed = false;
  bool done = false;  // the final message was handled
};

// The callback's form: the message, and whether it is this subscription's final message.
using MessageHandler = std::function<void(const Message& message, bool is_final)>;

class Subscription {
 public:
  // An empty handle (no subscription).
  Subscription() noexcept;
  Subscription(Subscription&& other) noexcept;
  // Unsubscribes the subscription held before (without waiting), then takes `other`'s.
  Subscription& operator=(Subscription&& other) noexcept;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription();

  // Subscribes `handler` to `topic`. A null topic or an empty handler is misuse (reported;
  // an empty handle returned).
  static Subscription Create(const Ref<Topic>& topic, MessageHandler handler,
                             SubscriptionOptions options = {},
                             SourceLocation where = SourceLocation::current());

  explicit operator bool() const noexcept { return core_ != nullptr; }

  // Leaves the topic; the final message follows. Returns true if this call unsubscribed,
  // false if it already was (not an error: a second call is a no-op).
  bool Unsubscribe(SourceLocation where = SourceLocation::current());
  // Waits until the final message was handled. Misuse (reported, false returned at once) when
  // called from this subscription's own callback, or before Unsubscribe (it would never
  // return). True once done.
  bool Join(SourceLocation where = SourceLocation::current());
  bool UnsubscribeAndJoin(SourceLocation where = SourceLocation::current());

  bool IsSubscribed() const noexcept;
  // True from the moment the final callback starts (so also inside it), as Asterisk's is_done.
  bool IsDone() const noexcept;

  // The unique id ("<topic>-<n>"), as in the subscription-change notices.
  const std::string& Id() const noexcept;
  // The topic subscribed to (null for an empty handle).
  Ref<Topic> GetTopic() const;

  // Type filter: accept (switching to selective filtering) or stop accepting a type.
  void AcceptType(const MessageType* type, SourceLocation where = SourceLocation::current());
  void DeclineType(const MessageType* type, SourceLocation where = SourceLocation::current());
  // Back to no type filtering (every type passes).
  void AcceptAllTypes();
  // Format filter: replaces the set of accepted formats (kNone: no format filter).
  void SetAcceptedFormats(MessageFormats formats);

  SubscriptionStats Stats() const;

 private:
  friend class Topic;
  explicit Subscription(Ref<bus_internal::SubscriptionCore> core) noexcept;
  Ref<bus_internal::SubscriptionCore> core_;
};

// Subscribes a callable taking (const Message&) or (const Message&, bool is_final).
template <class F>
requires std::invocable<F&, const Message&> || std::invocable<F&, const Message&, bool> Subscription
Subscribe(const Ref<Topic>& topic, F&& callback, SubscriptionOptions options = {},
          SourceLocation where = SourceLocation::current()) {
  if constexpr (std::invocable<F&, const Message&, bool>) {
    return Subscription::Create(topic, MessageHandler(std::forward<F>(callback)),
                                std::move(options), where);
  } else {
    return Subscription::Create(
        topic, [f = std::forward<F>(callback)](const Message& m, bool) mutable { f(m); },
        std::move(options), where);
  }
}

// The typed face: subscribes to the messages of `type` only (the filter is set before the
// subscription starts), calling `callback(const T&, const Message&)` for each. Notices and the
// final message are not passed to the callback.
template <class T, class F>
requires std::invocable<F&, const T&, const Message&> Subscription
Subscribe(const Ref<Topic>& topic, const TypedMessageType<T>& type, F&& callback,
          SubscriptionOptions options = {}, SourceLocation where = SourceLocation::current()) {
  options.accepted_types.push_back(type.get());
  return Subscription::Create(
      topic,
      [type, f = std::forward<F>(callback)](const Message& m, bool) mutable {
        if (const T* value = type.Get(m)) f(*value, m);
      },
      std::move(options), where);
}

}  // namespace plexus
