// MessageRouter: one subscription whose callback looks its message's route up in an immutable
// table.
//
// The moving parts:
//   * RouteTable: every route of the router, indexed four ways (by type id, cache routes by
//     their snapshot type's id, the format routes in a short list, the default). A table is never
//     modified once published; every route change builds a new one under mu_ and swaps table_.
//     Routes are shared between the tables they appear in (shared_ptr), so a change copies
//     pointers, not callbacks.
//   * Dispatch (the subscription's callback) loads table_ and calls the route it resolves,
//     holding no lock. Around that it counts itself in `entered_` and out in `exited_`.
//     A subscription's callbacks never overlap, except that a synchronous one may be entered
//     again on its own thread (a route that publishes on the topic), where inner dispatches
//     return before outer ones; so, after a swap, exited_ reaching the value entered_ had just
//     after the swap means every dispatch that could have loaded an older table has returned.
//     Each counter has one writer at a time (the subscription orders its callbacks), so
//     plain stores suffice.
//   * The fences: the dispatcher's count-in must be ordered before its table load, against
//     the mutator's swap before its read of entered_ (so that a dispatch is either counted
//     or sees the new table); likewise its count-out before its check for waiters. A full
//     fence on every dispatch costs more than the rest of the dispatch, so the fences are
//     asymmetric, as folly's and liburcu's: the dispatcher's side is a compiler barrier and
//     the rare mutator's side is membarrier(PRIVATE_EXPEDITED), which runs a full barrier on
//     every thread of the process. Where the kernel lacks it (and under ThreadSanitizer, which
//     cannot see it) both sides are seq_cst fences.
//   * Retiring a table: whoever swaps a table out owns it. A removal from outside the
//     router's dispatch waits for exited_ (atomic wait) and then destroys the old table
//     itself, so the removed callback is gone when the call returns. Every other change (an
//     addition, or a removal from inside a dispatch, which cannot wait for itself) parks the
//     old table in retired_ with its entered_ stamp; later changes and the outermost dispatch
//     on its way out free the parked tables whose stamp exited_ has reached. Destruction (of
//     tables and hence of callbacks) always happens after mu_ is released.
//   * A thread-local chain of dispatch frames tells a mutator whether it runs inside this
//     router's dispatch on this thread (possibly under another router's nested dispatch).
//   * Every core is in the registry of live routers (registry.h) from the moment its
//     subscription exists until it is destroyed, so the listings can read its counters.

#include "plexus/bus/message_router.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "plexus/bus/subscription_change.h"
#include "plexus/core/config.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/misuse.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"
#include "registry.h"

namespace plexus {
namespace bus_internal {
namespace {

bool RegisterMembarrier() {
  if constexpr (kSanitizeThread) return false;
  const long commands = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (commands < 0 || (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

bool Asymmetric() {
  static const bool registered = RegisterMembarrier();
  return registered;
}

// The dispatcher's side of the fences (see the file comment); `asymmetric`: Asymmetric(), as
// cached by the router, so that both sides of one router agree.
inline void LightFence(bool asymmetric) {
  if (asymmetric) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}
// The mutator's side.
void HeavyFence(bool asymmetric) {
  if (!asymmetric || syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

std::string FormatsName(MessageFormats formats) {
  std::string name;
  if (Any(formats & MessageFormat::kJson)) name = "json";
  if (Any(formats & MessageFormat::kText)) name += name.empty() ? "text" : "|text";
  return name;
}

}  // namespace

struct Route {
  Route(RouteKind route_kind, std::string route_name, RouteHandler callback,
        MessageFormats route_formats)
      : kind(route_kind),
        name(std::move(route_name)),
        formats(route_formats),
        handler(std::move(callback)) {}
  const RouteKind kind;
  const std::string name;
  const MessageFormats formats;  // kFormat routes only
  // Reset by a waiting removal once no dispatch can reach it (RouterCore::Change).
  RouteHandler handler;
  // Written by the dispatcher only (callbacks never overlap), read by Stats from anywhere;
  // mutable: the tables hold their routes as const.
  mutable std::atomic<std::uint64_t> calls{0};
  mutable std::atomic<std::uint64_t> failed{0};
};

struct RouteTable {
  // Index: MessageType::Id(); null where the type has no route. Sized to the largest routed id.
  std::vector<Route*> by_type;
  // The cache routes, indexed by their snapshot type's id likewise; empty when there is none,
  // which spares every other router the look at the payload.
  std::vector<Route*> by_snapshot;
  std::vector<Route*> by_format;              // disjoint format sets, in the order added
  Route* fallback = nullptr;                  // the default route
  std::vector<std::shared_ptr<Route>> owned;  // every route above, once

  const Route* Resolve(const Message& message, bool is_final) const noexcept {
    // A cache update is looked up first by the type of the snapshot it carries, falling
    // through to the lookup by its own type, as Asterisk's router_dispatch does.
    if (!by_snapshot.empty()) {
      const CacheUpdate* update = CacheUpdateType().Get(message);
      if (update != nullptr && update->type != nullptr) {
        const std::uint32_t snapshot_id = update->type->Id();
        if (snapshot_id < by_snapshot.size() && by_snapshot[snapshot_id] != nullptr) {
          return by_snapshot[snapshot_id];
        }
      }
    }
    const std::uint32_t id = message.Type().Id();
    if (id < by_type.size() && by_type[id] != nullptr) return by_type[id];
    if (!is_final && !by_format.empty()) {
      const MessageFormats offered = message.Type().AvailableFormats();
      for (const Route* route : by_format) {
        if (Any(route->formats & offered)) return route;
      }
    }
    return fallback;
  }

  std::unique_ptr<RouteTable> CopyWithout(const Route* removed) const {
    auto next = std::make_unique<RouteTable>();
    next->by_type = WithoutRoute(by_type, removed);
    next->by_snapshot = WithoutRoute(by_snapshot, removed);
    for (Route* r : by_format) {
      if (r != removed) next->by_format.push_back(r);
    }
    next->fallback = fallback == removed ? nullptr : fallback;
    for (const std::shared_ptr<Route>& r : owned) {
      if (r.get() != removed) next->owned.push_back(r);
    }
    return next;
  }

  // `index` with `removed` cleared, trimmed to its last route.
  static std::vector<Route*> WithoutRoute(const std::vector<Route*>& index, const Route* removed) {
    std::vector<Route*> out = index;
    for (Route*& r : out) {
      if (r == removed) r = nullptr;
    }
    while (!out.empty() && out.back() == nullptr) out.pop_back();
    return out;
  }

  // Whether `index` holds a route at `id`.
  static bool Has(const std::vector<Route*>& index, std::uint32_t id) noexcept {
    return id < index.size() && index[id] != nullptr;
  }
};

// One dispatch of a router in progress on this thread; chained to the enclosing one.
struct DispatchFrame {
  const RouterCore* core;
  const DispatchFrame* outer;
};
// Initial-exec: the library is position-independent, and the default model would make every
// dispatch call __tls_get_addr.
__attribute__((tls_model("initial-exec"))) thread_local const DispatchFrame* tls_frames = nullptr;

class RouterCore {
 public:
  explicit RouterCore(std::string topic_name)
      : asymmetric_(Asymmetric()), table_(new RouteTable), topic_name_(std::move(topic_name)) {}
  ~RouterCore() {
    // First, so that a listing walking the registry never sees a half-destroyed core.
    if (registered_) RouterRegistry::Get().Remove(this);
    // Nothing dispatches any more: the subscription's callback held this core.
    delete table_.load(std::memory_order_relaxed);
  }

  // Enters the registry of live routers under its subscription's id (once, at creation).
  void Register(std::string id) {
    id_ = std::move(id);
    registered_ = true;
    RouterRegistry::Get().Add(this);
  }
  const std::string& Id() const noexcept { return id_; }
  const std::string& TopicName() const noexcept { return topic_name_; }
  RouterCore(const RouterCore&) = delete;
  RouterCore& operator=(const RouterCore&) = delete;

  void Dispatch(const Message& message, bool is_final) {
    const DispatchFrame frame{this, tls_frames};
    tls_frames = &frame;
    entered_.store(entered_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    LightFence(asymmetric_);
    const RouteTable* table = table_.load(std::memory_order_acquire);
    if (const Route* found = table->Resolve(message, is_final)) {
      const Route& route = *found;
      Bump(route.kind == RouteKind::kDefault ? defaulted_ : routed_);
      if (route.kind == RouteKind::kCache) Bump(cache_routed_);
      Bump(route.calls);
      if (!core_internal::RunCatching(
              [&] { route.handler(message, is_final); },
              [&] { return "bus router on '" + topic_name_ + "': route '" + route.name + "'"; },
              SourceLocation::current())) {
        Bump(route.failed);
        Bump(failed_);
      }
    } else {
      Bump(unrouted_);
    }
    exited_.store(exited_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    LightFence(asymmetric_);
    if (waiters_.load(std::memory_order_relaxed) != 0) exited_.notify_all();
    tls_frames = frame.outer;
    // The outermost dispatch of this router frees what removals inside it parked.
    if (has_retired_.load(std::memory_order_relaxed) && !InsideDispatch()) FreeRetired();
  }

  // Swaps in the table `build(current, removes)` makes from the current one (null: no change,
  // false returned). A change that removed a callback (`removes` set) waits for the dispatches
  // that may still be running it, unless it is made from inside one (see the file comment).
  template <class Build>
  bool Change(Build&& build) {
    const bool inside = InsideDispatch();
    bool wait = false;
    std::unique_ptr<RouteTable> old;
    std::uint64_t stamp = 0;
    // The removed routes. Older parked tables may hold them too, so their callbacks are
    // destroyed explicitly once no dispatch can reach them, not with the last table.
    std::vector<std::shared_ptr<Route>> gone;
    {
      MutexLock lock(mu_);
      bool removes = false;
      std::unique_ptr<RouteTable> next = build(*table_.load(std::memory_order_relaxed), removes);
      if (next == nullptr) return false;
      wait = removes && !inside;
      if (wait) {
        for (const std::shared_ptr<Route>& r : table_.load(std::memory_order_relaxed)->owned) {
          if (std::find(next->owned.begin(), next->owned.end(), r) == next->owned.end()) {
            gone.push_back(r);
          }
        }
      }
      old.reset(
          const_cast<RouteTable*>(table_.exchange(next.release(), std::memory_order_seq_cst)));
      HeavyFence(asymmetric_);
      stamp = entered_.load(std::memory_order_relaxed);
      if (!wait) {
        retired_.push_back(Retired{std::move(old), stamp});
        has_retired_.store(true, std::memory_order_relaxed);
      }
    }
    if (wait) {
      WaitForExits(stamp);
      // Every table that holds a removed route was current before the swap, so no dispatch
      // can reach its callback now: destroy it here, before the caller returns.
      for (const std::shared_ptr<Route>& r : gone) r->handler = nullptr;
      old.reset();
    }
    FreeRetired();
    return true;
  }

  // Filter maintenance, as Asterisk's: a route accepts its type, a format route its formats, a
  // default route everything, for good. No router lock is held while the subscription's filter
  // changes: that may take the topic's lock (to update whether the subscription listens to
  // others' notices), and a synchronous dispatch holds the topic's lock while a route callback
  // may change routes, which takes mu_ — holding mu_ here would order the two locks both ways.
  // Each step only widens the filter, so concurrent steps commute once each re-checks the
  // "for good" state after its own change (the subscription's filter changes are serialized,
  // so whichever of two racing steps changes it last has seen the other's flag).
  void AcceptType(Subscription& subscription, const MessageType* type, SourceLocation where) {
    if (accept_all_.load()) return;
    subscription.AcceptType(type, where);
    if (accept_all_.load()) subscription.AcceptAllTypes();
  }
  void AcceptFormats(Subscription& subscription, MessageFormats formats) {
    const auto bits = static_cast<std::uint32_t>(formats);
    std::uint32_t wanted = accepted_formats_.fetch_or(bits) | bits;
    // A racing AcceptFormats may have set a smaller union after ours: set until the union
    // this thread last set is the current one.
    for (;;) {
      if (accept_all_.load()) return;  // AcceptEverything clears the format filter itself
      subscription.SetAcceptedFormats(static_cast<MessageFormats>(wanted));
      if (accept_all_.load()) {
        // AcceptEverything may have cleared the format filter before this thread set it.
        subscription.SetAcceptedFormats(MessageFormat::kNone);
        return;
      }
      const std::uint32_t now = accepted_formats_.load();
      if (now == wanted) return;
      wanted = now;
    }
  }
  void AcceptEverything(Subscription& subscription) {
    if (accept_all_.exchange(true)) return;
    // A format filter alone would still refuse the types that have no formatter.
    subscription.AcceptAllTypes();
    subscription.SetAcceptedFormats(MessageFormat::kNone);
  }

  const RouteTable& CurrentLocked() const PLEXUS_REQUIRES(mu_) {
    return *table_.load(std::memory_order_relaxed);
  }

  void Fill(MessageRouterStats& stats) const {
    stats.routed = routed_.load(std::memory_order_relaxed);
    stats.cache_routed = cache_routed_.load(std::memory_order_relaxed);
    stats.defaulted = defaulted_.load(std::memory_order_relaxed);
    stats.unrouted = unrouted_.load(std::memory_order_relaxed);
    stats.failed = failed_.load(std::memory_order_relaxed);
    MutexLock lock(mu_);
    for (const std::shared_ptr<Route>& r : CurrentLocked().owned) {
      stats.routes.push_back(RouteStats{r->kind, r->name, r->calls.load(std::memory_order_relaxed),
                                        r->failed.load(std::memory_order_relaxed)});
    }
  }

  mutable Mutex mu_;

 private:
  struct Retired {
    std::unique_ptr<RouteTable> table;
    std::uint64_t stamp;  // entered_ when swapped out: free once exited_ reaches it
  };

  // Callbacks never overlap, so a counter has one writer: no read-modify-write needed.
  static void Bump(std::atomic<std::uint64_t>& counter) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  bool InsideDispatch() const noexcept {
    for (const DispatchFrame* f = tls_frames; f != nullptr; f = f->outer) {
      if (f->core == this) return true;
    }
    return false;
  }

  // Frees the parked tables no dispatch can still be using, after unlocking.
  void FreeRetired() {
    std::vector<Retired> done;
    {
      MutexLock lock(mu_);
      const std::uint64_t exited = exited_.load(std::memory_order_acquire);
      auto ready = std::partition(retired_.begin(), retired_.end(),
                                  [&](const Retired& r) { return r.stamp > exited; });
      std::move(ready, retired_.end(), std::back_inserter(done));
      retired_.erase(ready, retired_.end());
      has_retired_.store(!retired_.empty(), std::memory_order_relaxed);
    }
  }

  void WaitForExits(std::uint64_t stamp) {
    waiters_.fetch_add(1, std::memory_order_relaxed);
    HeavyFence(asymmetric_);
    for (std::uint64_t seen = exited_.load(std::memory_order_acquire); seen < stamp;
         seen = exited_.load(std::memory_order_acquire)) {
      exited_.wait(seen, std::memory_order_acquire);
    }
    waiters_.fetch_sub(1, std::memory_order_relaxed);
  }

  const bool asymmetric_;  // membarrier registered: the fences are asymmetric
  // Replaced only under mu_ (and owned by the core); loaded without a lock by Dispatch.
  std::atomic<const RouteTable*> table_;
  std::atomic<std::uint64_t> entered_{0};
  std::atomic<std::uint64_t> exited_{0};
  std::atomic<std::uint32_t> waiters_{0};
  std::atomic<bool> has_retired_{false};
  std::atomic<std::uint64_t> routed_{0};
  std::atomic<std::uint64_t> cache_routed_{0};
  std::atomic<std::uint64_t> defaulted_{0};
  std::atomic<std::uint64_t> unrouted_{0};
  std::atomic<std::uint64_t> failed_{0};
  const std::string topic_name_;
  // Written once, before the core enters the registry (whose lock orders it before readers).
  std::string id_;
  bool registered_ = false;
  // The registry's links, guarded by its lock.
  friend class LiveRegistry<RouterCore>;
  RouterCore* prev_live_ = nullptr;
  RouterCore* next_live_ = nullptr;
  std::vector<Retired> retired_ PLEXUS_GUARDED_BY(mu_);
  // The filter's state (see AcceptType): sequentially consistent, so that a step's re-check
  // after changing the subscription's filter sees a racing AcceptEverything.
  std::atomic<bool> accept_all_{false};
  std::atomic<std::uint32_t> accepted_formats_{0};
};

}  // namespace bus_internal

using bus_internal::Route;
using bus_internal::RouteTable;

namespace {

// An empty handle refuses route changes loudly: the routes would silently never run.
bool CheckRouter(const void* core, SourceLocation where) {
  if (core != nullptr) return true;
  ReportMisuse("message router: route change on an empty router", where);
  return false;
}

}  // namespace

MessageRouter::MessageRouter() noexcept = default;
MessageRouter::MessageRouter(MessageRouter&& other) noexcept = default;
MessageRouter& MessageRouter::operator=(MessageRouter&& other) noexcept {
  if (this != &other) {
    subscription_ = std::move(other.subscription_);
    core_ = std::move(other.core_);
  }
  return *this;
}
MessageRouter::~MessageRouter() = default;

MessageRouter::MessageRouter(Subscription subscription,
                             std::shared_ptr<bus_internal::RouterCore> core) noexcept
    : core_(std::move(core)), subscription_(std::move(subscription)) {}

MessageRouter MessageRouter::Create(const Ref<Topic>& topic, SubscriptionOptions options,
                                    SourceLocation where) {
  if (topic == nullptr) {
    ReportMisuse("message router: null topic", where);
    return {};
  }
  auto core = std::make_shared<bus_internal::RouterCore>(topic->Name());
  // Selective from the start (a router takes only what it has routes for), with its own
  // subscribe notice (accepted while it joins) and its final message (which passes every
  // filter). Declining the change type again right after means that, like any subscription,
  // the router hears the other subscriptions' notices only if it asks: a route for the
  // change type, or SubscriptionOptions::subscription_changes.
  options.accepted_types.push_back(SubscriptionChangeType().get());
  Subscription subscription = Subscription::Create(
      topic, [core](const Message& m, bool is_final) { core->Dispatch(m, is_final); },
      std::move(options), where);
  if (!subscription) return {};
  subscription.DeclineType(SubscriptionChangeType().get(), where);
  core->Register(subscription.Id());
  return MessageRouter(std::move(subscription), std::move(core));
}

bool MessageRouter::AddRouteHandler(const MessageType* type, RouteHandler handler,
                                    SourceLocation where) {
  if (!CheckRouter(core_.get(), where)) return false;
  if (type == nullptr || !handler) {
    ReportMisuse(type == nullptr ? "message router: route for a null type"
                                 : "message router: route with an empty callback",
                 where);
    return false;
  }
  auto route = std::make_shared<Route>(RouteKind::kType, type->Name(), std::move(handler),
                                       MessageFormat::kNone);
  const std::uint32_t id = type->Id();
  const bool added = core_->Change(
      [&](const RouteTable& current, bool& /*removes*/) -> std::unique_ptr<RouteTable> {
        if (RouteTable::Has(current.by_type, id)) return nullptr;
        std::unique_ptr<RouteTable> next = current.CopyWithout(nullptr);
        if (next->by_type.size() <= id) next->by_type.resize(id + 1, nullptr);
        next->by_type[id] = route.get();
        next->owned.push_back(route);
        return next;
      });
  if (!added) {
    ReportMisuse("message router: a route for type '" + type->Name() +
                     "' exists already (one route per type; remove it first)",
                 where);
    return false;
  }
  core_->AcceptType(subscription_, type, where);
  return true;
}

bool MessageRouter::RemoveRoute(const MessageType* type, SourceLocation where) {
  if (!CheckRouter(core_.get(), where)) return false;
  if (type == nullptr) {
    ReportMisuse("message router: removing the route of a null type", where);
    return false;
  }
  const std::uint32_t id = type->Id();
  return core_->Change(
      [&](const RouteTable& current, bool& removes) -> std::unique_ptr<RouteTable> {
        if (!RouteTable::Has(current.by_type, id)) return nullptr;
        removes = true;
        return current.CopyWithout(current.by_type[id]);
      });
}

bool MessageRouter::HasRoute(const MessageType* type) const {
  if (core_ == nullptr || type == nullptr) return false;
  MutexLock lock(core_->mu_);
  return RouteTable::Has(core_->CurrentLocked().by_type, type->Id());
}

bool MessageRouter::AddCacheRouteHandler(const MessageType* snapshot_type, RouteHandler handler,
                                         SourceLocation where) {
  if (!CheckRouter(core_.get(), where)) return false;
  if (snapshot_type == nullptr || !handler) {
    ReportMisuse(snapshot_type == nullptr ? "message router: cache route for a null type"
                                          : "message router: cache route with an empty callback",
                 where);
    return false;
  }
  auto route = std::make_shared<Route>(RouteKind::kCache, snapshot_type->Name(), std::move(handler),
                                       MessageFormat::kNone);
  const std::uint32_t id = snapshot_type->Id();
  const bool added = core_->Change(
      [&](const RouteTable& current, bool& /*removes*/) -> std::unique_ptr<RouteTable> {
        if (RouteTable::Has(current.by_snapshot, id)) return nullptr;
        std::unique_ptr<RouteTable> next = current.CopyWithout(nullptr);
        if (next->by_snapshot.size() <= id) next->by_snapshot.resize(id + 1, nullptr);
        next->by_snapshot[id] = route.get();
        next->owned.push_back(route);
        return next;
      });
  if (!added) {
    ReportMisuse("message router: a cache route for snapshot type '" + snapshot_type->Name() +
                     "' exists already (one cache route per snapshot type; remove it first)",
                 where);
    return false;
  }
  core_->AcceptType(subscription_, CacheUpdateType().get(), where);
  return true;
}

bool MessageRouter::RemoveCacheRoute(const MessageType* snapshot_type, SourceLocation where) {
  if (!CheckRouter(core_.get(), where)) return false;
  if (snapshot_type == nullptr) {
    ReportMisuse("message router: removing the cache route of a null type", where);
    return false;
  }
  const std::uint32_t id = snapshot_type->Id();
  return core_->Change(
      [&](const RouteTable& current, bool& removes) -> std::unique_ptr<RouteTable> {
        if (!RouteTable::Has(current.by_snapshot, id)) return nullptr;
        removes = true;
        return current.CopyWithout(current.by_snapshot[id]);
      });
}

bool MessageRouter::HasCacheRoute(const MessageType* snapshot_type) const {
  if (core_ == nullptr || snapshot_type == nullptr) return false;
  MutexLock lock(core_->mu_);
  return RouteTable::Has(core_->CurrentLocked().by_snapshot, snapshot_type->Id());
}

bool MessageRouter::AddFormatRouteHandler(MessageFormats formats, RouteHandler handler,
                                          SourceLocation where) {
  if (!CheckRouter(core_.get(), where)) return false;
  if (!Any(formats) || !handler) {
    ReportMisuse(!Any(formats) ? "message router: format route with no format"
                               : "message router: format route with an empty callback",
                 where);
    return false;
  }
  auto route = std::make_shared<Route>(RouteKind::kFormat, bus_internal::FormatsName(formats),
                                       std::move(handler), formats);
  const bool added = core_->Change(
      [&](const RouteTable& current, bool& /*removes*/) -> std::unique_ptr<RouteTable> {
        for (const Route* r : current.by_format) {
          if (Any(r->formats & formats)) return nullptr;
        }
        std::unique_ptr<RouteTable> next = current.CopyWithout(nullptr);
        next->by_format.push_back(route.get());
        next->owned.push_back(route);
        return next;
      });
  if (!added) {
    ReportMisuse("message router: a format route for '" + bus_internal::FormatsName(formats) +
                     "' shares a format with an existing one (remove it first)",
                 where);
    return false;
  }
  core_->AcceptFormats(subscription_, formats);
  return true;
}

bool MessageRouter::RemoveFormatRoute(MessageFormats formats, SourceLocation where) {
  if (!CheckRouter(core_.get(), where)) return false;
  return core_->Change(
      [&](const RouteTable& current, bool& removes) -> std::unique_ptr<RouteTable> {
        for (const Route* r : current.by_format) {
          if (r->formats == formats) {
            removes = true;
            return current.CopyWithout(r);
          }
        }
        return nullptr;
      });
}

bool MessageRouter::SetDefaultRouteHandler(RouteHandler handler, SourceLocation where) {
  if (!CheckRouter(core_.get(), where)) return false;
  if (!handler) {
    ReportMisuse("message router: default route with an empty callback", where);
    return false;
  }
  auto route = std::make_shared<Route>(RouteKind::kDefault, "default", std::move(handler),
                                       MessageFormat::kNone);
  core_->Change([&](const RouteTable& current, bool& removes) {
    removes = current.fallback != nullptr;
    std::unique_ptr<RouteTable> next = current.CopyWithout(current.fallback);
    next->fallback = route.get();
    next->owned.push_back(route);
    return next;
  });
  core_->AcceptEverything(subscription_);
  return true;
}

bool MessageRouter::ClearDefaultRoute(SourceLocation where) {
  if (!CheckRouter(core_.get(), where)) return false;
  return core_->Change(
      [&](const RouteTable& current, bool& removes) -> std::unique_ptr<RouteTable> {
        if (current.fallback == nullptr) return nullptr;
        removes = true;
        return current.CopyWithout(current.fallback);
      });
}

bool MessageRouter::Unsubscribe(SourceLocation where) {
  return subscription_.Unsubscribe(where);
}
bool MessageRouter::Join(SourceLocation where) {
  return subscription_.Join(where);
}
bool MessageRouter::UnsubscribeAndJoin(SourceLocation where) {
  return subscription_.UnsubscribeAndJoin(where);
}
bool MessageRouter::IsSubscribed() const noexcept {
  return subscription_.IsSubscribed();
}
bool MessageRouter::IsDone() const noexcept {
  return subscription_.IsDone();
}

PublishResult MessageRouter::PublishAndWait(const Ref<Message>& message, SourceLocation where) {
  Ref<Topic> topic = subscription_.GetTopic();
  if (topic == nullptr) {
    ReportMisuse("message router: PublishAndWait on an empty router", where);
    return {};
  }
  return topic->PublishAndWait(message, subscription_, where);
}

MessageRouterStats MessageRouter::Stats() const {
  MessageRouterStats stats;
  if (core_ == nullptr) return stats;
  stats.subscription = subscription_.Stats();
  core_->Fill(stats);
  return stats;
}

const char* RouteKindName(RouteKind kind) noexcept {
  switch (kind) {
    case RouteKind::kType:
      return "type";
    case RouteKind::kFormat:
      return "format";
    case RouteKind::kDefault:
      return "default";
    case RouteKind::kCache:
      return "cache";
  }
  return "?";
}

namespace bus_internal {

std::vector<MessageRouterStats> ListRouterCores() {
  std::vector<MessageRouterStats> out;
  RouterRegistry::Get().ForEach([&](const RouterCore& core) {
    MessageRouterStats& stats = out.emplace_back();
    stats.subscription.id = core.Id();
    stats.subscription.topic = core.TopicName();
    core.Fill(stats);
  });
  return out;
}

}  // namespace bus_internal

}  // namespace plexus
