#include "plexus/bus/topic.h"

#include <algorithm>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "inline_receiver.h"
#include "message_refs.h"
#include "plexus/bus/subscription.h"
#include "plexus/core/id.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/misuse.h"
#include "registry.h"
#include "small_vector.h"
#include "subscription_core.h"

namespace plexus {
namespace bus_internal {

// What a fan-out walks: the topic's subscriptions and forward targets, immutable once published
// (copy on write), so that a subscribe or unsubscribe made by a synchronous callback in the
// middle of a fan-out does not disturb it.
//
// One block: this header, then the subscriptions, the listeners (those of the subscriptions
// that hear the others' subscription changes, subscription.h: a notice visits these only, so N
// subscriptions made one after another cost N deliveries of notices, not N(N+1)/2), then the
// forward targets, then the inline receivers (caching topics: Topic::DeliverInline), each
// element holding references. A topic with one subscription and one forward (a state's topic)
// pays one 32-byte block here, not a header and four vectors; a fan-out reads the elements where
// the header is.
class alignas(Ref<SubscriptionCore>) TopicSnapshot {
 public:
  using Sub = Ref<SubscriptionCore>;
  using Fwd = Ref<Topic>;
  // A subscription whose published messages go to a receiver the fan-out calls itself.
  struct Inline {
    Sub subscription;
    Ref<InlineReceiver> receiver;
  };

  // What an edit changes; rebuilt into a snapshot by Make. Edits are rare (subscribe,
  // unsubscribe, forward), so their vectors are temporary.
  struct Draft {
    std::vector<Sub> subscribers;
    std::vector<Sub> listeners;
    std::vector<Fwd> forwards;
    std::vector<Inline> inlines;
  };

  static TopicSnapshot* Make(const Draft& d) {
    const std::size_t subs = d.subscribers.size() + d.listeners.size();
    void* raw = ::operator new(sizeof(TopicSnapshot) + subs * sizeof(Sub) +
                               d.forwards.size() * sizeof(Fwd) + d.inlines.size() * sizeof(Inline));
    auto* s = new (raw) TopicSnapshot(static_cast<std::uint32_t>(d.subscribers.size()),
                                      static_cast<std::uint32_t>(d.listeners.size()),
                                      static_cast<std::uint32_t>(d.forwards.size()),
                                      static_cast<std::uint32_t>(d.inlines.size()));
    Sub* sub = s->SubsBegin();
    for (const Sub& x : d.subscribers) new (sub++) Sub(x);
    for (const Sub& x : d.listeners) new (sub++) Sub(x);
    Fwd* fwd = s->FwdsBegin();
    for (const Fwd& x : d.forwards) new (fwd++) Fwd(x);
    Inline* in = s->InlinesBegin();
    for (const Inline& x : d.inlines) new (in++) Inline(x);
    return s;
  }

  static void Destroy(TopicSnapshot* s) noexcept {
    if (s == nullptr) return;
    Sub* sub = s->SubsBegin();
    for (std::uint32_t i = 0; i < s->subscribers_ + s->listeners_; ++i) sub[i].~Sub();
    Fwd* fwd = s->FwdsBegin();
    for (std::uint32_t i = 0; i < s->forwards_; ++i) fwd[i].~Fwd();
    Inline* in = s->InlinesBegin();
    for (std::uint32_t i = 0; i < s->inlines_; ++i) in[i].~Inline();
    s->~TopicSnapshot();
    ::operator delete(s);
  }

  Draft ToDraft() const {
    Draft d;
    d.subscribers.assign(Subscribers().begin(), Subscribers().end());
    d.listeners.assign(Listeners().begin(), Listeners().end());
    d.forwards.assign(Forwards().begin(), Forwards().end());
    d.inlines.assign(Inlines().begin(), Inlines().end());
    return d;
  }

  std::span<const Sub> Subscribers() const noexcept { return {SubsBegin(), subscribers_}; }
  std::span<const Sub> Listeners() const noexcept {
    return {SubsBegin() + subscribers_, listeners_};
  }
  std::span<const Fwd> Forwards() const noexcept { return {FwdsBegin(), forwards_}; }
  std::span<const Inline> Inlines() const noexcept { return {InlinesBegin(), inlines_}; }
  bool HasInlines() const noexcept { return inlines_ != 0; }

 private:
  TopicSnapshot(std::uint32_t subscribers, std::uint32_t listeners, std::uint32_t forwards,
                std::uint32_t inlines)
      : subscribers_(subscribers), listeners_(listeners), forwards_(forwards), inlines_(inlines) {}
  ~TopicSnapshot() = default;

  Sub* SubsBegin() const noexcept {
    return std::launder(reinterpret_cast<Sub*>(const_cast<TopicSnapshot*>(this) + 1));
  }
  Fwd* FwdsBegin() const noexcept {
    return std::launder(reinterpret_cast<Fwd*>(SubsBegin() + subscribers_ + listeners_));
  }
  Inline* InlinesBegin() const noexcept {
    return std::launder(reinterpret_cast<Inline*>(FwdsBegin() + forwards_));
  }

  const std::uint32_t subscribers_;
  const std::uint32_t listeners_;
  const std::uint32_t forwards_;
  const std::uint32_t inlines_;
};
static_assert(sizeof(TopicSnapshot) % alignof(Ref<SubscriptionCore>) == 0);
static_assert(sizeof(Ref<SubscriptionCore>) == sizeof(Ref<Topic>));
static_assert(alignof(TopicSnapshot::Inline) == alignof(Ref<Topic>));

namespace {

// Calls the inline receivers of a publish (not of a notice: the subscriptions they stand for
// hear notices as listeners). Returns how many it reached, counted as deliveries. A
// subscription unsubscribed by a callback of this very fan-out (which still walks the snapshot
// that held it) is skipped, as its delivery would have been.
[[gnu::noinline]] std::uint32_t RunInlines(const TopicSnapshot& snapshot, const Message& message) {
  std::uint32_t reached = 0;
  for (const TopicSnapshot::Inline& in : snapshot.Inlines()) {
    if (!in.subscription->IsSubscribed()) [[unlikely]] {
      continue;
    }
    InlineReceiver& receiver = *in.receiver;
    core_internal::RunCatching([&] { receiver.Receive(message); },
                               [&] { return "bus subscription '" + in.subscription->Id() + "'"; },
                               SourceLocation::current());
    ++reached;
  }
  return reached;
}

}  // namespace

}  // namespace bus_internal

using bus_internal::SubscriptionCore;
using bus_internal::TopicSnapshot;

Topic::Topic(std::string_view name, std::string_view description)
    : id_(NextUniqueId()),
      name_(name),
      description_(description),
      lock_class_(name_.c_str()),
      mu_(lock_class_) {
  bus_internal::TopicRegistry::Get().Add(this);
}

Topic::~Topic() {
  bus_internal::TopicRegistry::Get().Remove(this);
  TopicSnapshot::Destroy(snapshot_);
  for (TopicSnapshot* s : retired_) TopicSnapshot::Destroy(s);
}

Ref<Topic> Topic::Create(std::string_view name, std::string_view description,
                         SourceLocation where) {
  return Ref<Topic>::Adopt(new Topic(name, description), where);
}

TopicStats Topic::Stats() const {
  TopicStats s;
  s.name = name_;
  s.description = description_;
  s.id = id_;
  s.subscribers = subscriber_count_.load(std::memory_order_relaxed);
  s.forwards_out = receivers_.load(std::memory_order_relaxed) - s.subscribers;
  s.published = published_.load(std::memory_order_relaxed) +
                published_unheard_.load(std::memory_order_relaxed);
  s.forwarded_in = forwarded_in_.load(std::memory_order_relaxed);
  s.deliveries = deliveries_.load(std::memory_order_relaxed);
  return s;
}

// -----------------------------------------------------------------------------
// Publishing
// -----------------------------------------------------------------------------

PublishResult Topic::Publish(const Ref<Message>& message, SourceLocation where) {
  if (message == nullptr) [[unlikely]] {
    ReportMisuse("Topic::Publish: null message", where);
    return {};
  }
  return PublishImpl(message.get(), nullptr);
}

PublishResult Topic::Publish(Ref<Message>&& message, SourceLocation where) {
  Message* m = message.get();
  if (m == nullptr) [[unlikely]] {
    ReportMisuse("Topic::Publish: null message", where);
    return {};
  }
  // The publish owns the caller's reference now: let go of it here without a count change.
  static_cast<void>(message.Detach());
  return PublishImpl(m, nullptr, /*notice=*/false, /*exclude=*/nullptr, /*owned=*/true);
}

PublishResult Topic::PublishAndWait(const Ref<Message>& message, const Subscription& subscriber,
                                    SourceLocation where) {
  if (message == nullptr) {
    ReportMisuse("Topic::PublishAndWait: null message", where);
    return {};
  }
  SubscriptionCore* target = subscriber.core_.get();
  if (target == nullptr) {
    ReportMisuse("Topic::PublishAndWait: empty subscription handle", where);
    return {};
  }
  if (target->InOwnCallback() && !target->IsSynchronous()) {
    ReportMisuse(
        "Topic::PublishAndWait for a subscription from its own callback (it would wait "
        "for itself)",
        where);
    return {};
  }
  bus_internal::WaitTicket ticket{target, 0};
  const PublishResult result = PublishImpl(message.get(), &ticket);
  // A synchronous subscriber ran its callback inside the publish.
  if (ticket.seq != 0) target->WaitHandled(ticket.seq);
  return result;
}

namespace bus_internal {

// The walk along forward edges: the targets still to visit, and the topics this publish
// already reached (each topic is visited once, so cycles end and diamonds deliver once). No
// topic lock is held while another topic is visited, so forward edges impose no lock order.
struct ForwardWalk {
  explicit ForwardWalk(const Topic* origin) { visited.push_back(origin); }

  SmallVector<Ref<Topic>, 4> pending;
  SmallVector<const Topic*, 8> visited;
};

// A publish's forward walk, made only when a fan-out meets a forward: most topics have none,
// and their publishes then pay nothing for it (not even the zeroing of its inline arrays,
// which a std::optional<ForwardWalk> costs).
class LazyForwardWalk {
 public:
  explicit LazyForwardWalk(const Topic* origin) noexcept : origin_(origin) {}
  ~LazyForwardWalk() {
    if (walk_ != nullptr) walk_->~ForwardWalk();
  }
  LazyForwardWalk(const LazyForwardWalk&) = delete;
  LazyForwardWalk& operator=(const LazyForwardWalk&) = delete;

  // What FanOut calls for each forward target of a snapshot.
  void push_back(const Ref<Topic>& target) {
    if (walk_ == nullptr) walk_ = new (storage_) ForwardWalk(origin_);
    walk_->pending.push_back(target);
  }
  // Null until a forward was met.
  ForwardWalk* get() const noexcept { return walk_; }
  // Whether topics are waiting to be visited.
  bool HasPending() const noexcept { return walk_ != nullptr && !walk_->pending.empty(); }

 private:
  const Topic* const origin_;
  ForwardWalk* walk_ = nullptr;
  alignas(ForwardWalk) unsigned char storage_[sizeof(ForwardWalk)];
};

}  // namespace bus_internal

PublishResult Topic::PublishImpl(Message* message, bus_internal::WaitTicket* ticket, bool notice,
                                 const SubscriptionCore* exclude, bool owned) {
  bus_internal::MessageRefs refs(message, owned);
  PublishResult result;
  if (receivers_.load(std::memory_order_acquire) == 0) {
    published_unheard_.fetch_add(1, std::memory_order_relaxed);
    return result;
  }
  bus_internal::LazyForwardWalk lazy(this);
  FanOut(refs, message, ticket, notice, exclude, /*origin=*/true, result, lazy);
  bus_internal::ForwardWalk* walk = lazy.get();
  if (walk == nullptr) [[likely]] {
    return result;
  }
  while (!walk->pending.empty()) {
    Ref<Topic> next = walk->pending.pop_back();
    if (walk->visited.contains(next.get())) continue;
    walk->visited.push_back(next.get());
    next->forwarded_in_.fetch_add(1, std::memory_order_relaxed);
    if (next->receivers_.load(std::memory_order_acquire) == 0) continue;
    next->FanOut(refs, message, ticket, notice, exclude, /*origin=*/false, result, lazy);
  }
  return result;
}

namespace bus_internal {

// What a fan-out leaves for after its lock is let go: snapshots retired during it, and
// subscriptions whose congestion alert changed (the alert handler is user code; it may publish
// here, or wait for a thread that does). Both are rare, so a fan-out holds one pointer to this,
// made on first use, rather than two vectors to set up and tear down on every publish.
struct FanOutAftermath {
  FanOutAftermath() = default;
  FanOutAftermath(const FanOutAftermath&) = delete;
  FanOutAftermath& operator=(const FanOutAftermath&) = delete;
  // Frees the retired snapshots (which may drop the last references to subscriptions and
  // topics): after the lock, also when the fan-out is unwinding.
  ~FanOutAftermath() {
    for (TopicSnapshot* s : to_free) TopicSnapshot::Destroy(s);
  }

  std::vector<TopicSnapshot*> to_free;
  std::vector<Ref<SubscriptionCore>> alerted;
};

}  // namespace bus_internal

// `next`: the publish's forward walk (a LazyForwardWalk), which gets this topic's forwards.
template <class Targets>
void Topic::FanOut(bus_internal::MessageRefs& refs, Message* message,
                   bus_internal::WaitTicket* ticket, bool notice, const SubscriptionCore* exclude,
                   bool origin, PublishResult& result, Targets& next) {
  std::unique_ptr<bus_internal::FanOutAftermath> after;
  {
    MutexLock lock(mu_);
    if (origin) {
      published_.store(published_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    TopicSnapshot* snapshot = snapshot_;
    if (snapshot == nullptr) return;
    // Lowered however the fan-out ends: a delivery that throws (a queue segment that could not
    // be allocated) must not leave the retired snapshots unfreed for the topic's lifetime.
    ++fanout_depth_;
    struct DepthGuard {
      Topic& topic;
      std::unique_ptr<bus_internal::FanOutAftermath>& aftermath;
      // Destroyed before `lock`, so mu_ is held; the analysis cannot see that through a
      // destructor.
      ~DepthGuard() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
        if (--topic.fanout_depth_ == 0 && !topic.retired_.empty()) [[unlikely]] {
          topic.TakeRetiredLocked(aftermath);
        }
      }
    } depth_guard{*this, after};
    // Tallied in locals and added to the result and the topic's counter once.
    std::uint32_t delivered = 0;
    std::uint32_t dropped = 0;
    // Caching topics first (their caches are current before any other subscriber runs).
    if (!notice && snapshot->HasInlines()) [[unlikely]] {
      delivered += bus_internal::RunInlines(*snapshot, *message);
    }
    // The last fan-out of the publish may hand the publish's own reference to a queue.
    refs.BeginFanOut(snapshot->Forwards().empty() && !next.HasPending());
    const std::span<const Ref<SubscriptionCore>> subs =
        notice ? snapshot->Listeners() : snapshot->Subscribers();
    auto remaining = static_cast<std::uint32_t>(subs.size());
    for (const Ref<SubscriptionCore>& sub : subs) {
      const std::uint32_t left = remaining--;
      if (sub.get() == exclude) [[unlikely]] {
        continue;
      }
      bool alert_changed = false;
      const bus_internal::DeliverOutcome outcome =
          sub->Deliver(message, ticket, refs, left, dropped, alert_changed);
      if (outcome == bus_internal::DeliverOutcome::kDelivered) [[likely]] {
        ++delivered;
      } else if (outcome == bus_internal::DeliverOutcome::kFiltered) {
        ++result.filtered;
      } else if (outcome == bus_internal::DeliverOutcome::kRejected) {
        ++result.rejected;
      }  // kDropped: counted in `dropped` by Deliver
      if (alert_changed) [[unlikely]] {
        if (after == nullptr) after = std::make_unique<bus_internal::FanOutAftermath>();
        after->alerted.push_back(sub);
      }
    }
    result.delivered += delivered;
    result.dropped += dropped;
    deliveries_.store(deliveries_.load(std::memory_order_relaxed) + delivered,
                      std::memory_order_relaxed);
    for (const Ref<Topic>& target : snapshot->Forwards()) next.push_back(target);
  }
  if (after != nullptr) [[unlikely]] {
    for (const Ref<SubscriptionCore>& sub : after->alerted) sub->ReportAlertChanges();
  }
}

void Topic::TakeRetiredLocked(std::unique_ptr<bus_internal::FanOutAftermath>& after) noexcept {
  // Without memory for the aftermath the snapshots wait for the next outermost fan-out (or the
  // topic's end): this runs from a destructor, which must not throw.
  if (after == nullptr) after.reset(new (std::nothrow) bus_internal::FanOutAftermath);
  if (after != nullptr) after->to_free.swap(retired_);
}

// -----------------------------------------------------------------------------
// Snapshot changes (callers hold mu_)
// -----------------------------------------------------------------------------

template <class Edit>
bool Topic::EditSnapshotLocked(Edit edit) {
  TopicSnapshot::Draft draft = snapshot_ ? snapshot_->ToDraft() : TopicSnapshot::Draft{};
  if (!edit(draft)) return false;
  TopicSnapshot* old = std::exchange(snapshot_, TopicSnapshot::Make(draft));
  if (old == nullptr) return true;
  // A fan-out on this thread may still walk the old one (a synchronous callback subscribed or
  // unsubscribed): free it once the outermost fan-out ends.
  if (fanout_depth_ > 0) {
    retired_.push_back(old);
  } else {
    TopicSnapshot::Destroy(old);
  }
  return true;
}

namespace {

// Erases `item` from `list`, keeping the others' order; false if it was not there.
template <class T, class U>
bool EraseOne(std::vector<Ref<T>>& list, const U* item) {
  auto it =
      std::find_if(list.begin(), list.end(), [item](const Ref<T>& r) { return r.get() == item; });
  if (it == list.end()) return false;
  list.erase(it);
  return true;
}

bool EraseInline(std::vector<TopicSnapshot::Inline>& list, const SubscriptionCore* core) {
  auto it = std::find_if(list.begin(), list.end(), [core](const TopicSnapshot::Inline& in) {
    return in.subscription.get() == core;
  });
  if (it == list.end()) return false;
  list.erase(it);
  return true;
}

}  // namespace

void Topic::AddSubscriberLocked(SubscriptionCore* core, bool listens) {
  EditSnapshotLocked([&](TopicSnapshot::Draft& s) {
    s.subscribers.emplace_back(core);
    if (listens) s.listeners.emplace_back(core);
    return true;
  });
  subscriber_count_.fetch_add(1, std::memory_order_relaxed);
  receivers_.fetch_add(1, std::memory_order_release);
}

bool Topic::RemoveSubscriberLocked(SubscriptionCore* core) {
  if (!EditSnapshotLocked([&](TopicSnapshot::Draft& s) {
        if (!EraseOne(s.subscribers, core) && !EraseInline(s.inlines, core)) return false;
        EraseOne(s.listeners, core);
        return true;
      })) {
    return false;
  }
  subscriber_count_.fetch_sub(1, std::memory_order_relaxed);
  receivers_.fetch_sub(1, std::memory_order_release);
  return true;
}

void Topic::SetListenerLocked(SubscriptionCore* core, bool listens) {
  EditSnapshotLocked([&](TopicSnapshot::Draft& s) {
    const bool listed =
        std::any_of(s.listeners.begin(), s.listeners.end(),
                    [core](const Ref<SubscriptionCore>& r) { return r.get() == core; });
    if (listed == listens) return false;
    if (listens) {
      s.listeners.emplace_back(core);
    } else {
      EraseOne(s.listeners, core);
    }
    return true;
  });
}

bool Topic::DeliverInline(const Subscription& subscription,
                          Ref<bus_internal::InlineReceiver> receiver) {
  SubscriptionCore* core = subscription.core_.get();
  if (core == nullptr || receiver == nullptr) return false;
  MutexLock lock(mu_);
  // Under the lock: the subscription moves from the subscribers to the inline receivers
  // between two fan-outs, so every publish reaches it exactly once, one way or the other.
  if (!core->IsSubscribed()) return false;
  return EditSnapshotLocked([&](TopicSnapshot::Draft& s) {
    if (!EraseOne(s.subscribers, core)) return false;
    s.inlines.push_back({Ref<SubscriptionCore>(core), std::move(receiver)});
    return true;
  });
}

bool Topic::HasForwardLocked(const Topic* to) const {
  if (snapshot_ == nullptr) return false;
  const auto forwards = snapshot_->Forwards();
  return std::any_of(forwards.begin(), forwards.end(),
                     [to](const Ref<Topic>& t) { return t.get() == to; });
}

void Topic::AddForwardLocked(Topic* to) {
  EditSnapshotLocked([&](TopicSnapshot::Draft& s) {
    s.forwards.emplace_back(to);
    return true;
  });
  receivers_.fetch_add(1, std::memory_order_release);
}

bool Topic::RemoveForwardLocked(Topic* to) {
  if (!EditSnapshotLocked([&](TopicSnapshot::Draft& s) { return EraseOne(s.forwards, to); })) {
    return false;
  }
  receivers_.fetch_sub(1, std::memory_order_release);
  return true;
}

// -----------------------------------------------------------------------------
// Forwarding
// -----------------------------------------------------------------------------

Forward ForwardAll(const Ref<Topic>& from, const Ref<Topic>& to, SourceLocation where) {
  Forward forward;
  if (from == nullptr || to == nullptr) {
    ReportMisuse("ForwardAll: null topic", where);
    return forward;
  }
  if (from == to) return forward;
  {
    MutexLock lock(from->mu_);
    // Already forwarded: a second edge would deliver twice.
    if (from->HasForwardLocked(to.get())) return forward;
    from->AddForwardLocked(to.get());
  }
  forward.from_ = from;
  forward.to_ = to;
  return forward;
}

Forward::Forward(Forward&& other) noexcept
    : from_(std::move(other.from_)), to_(std::move(other.to_)) {}

Forward& Forward::operator=(Forward&& other) noexcept {
  if (this != &other) {
    Cancel();
    from_ = std::move(other.from_);
    to_ = std::move(other.to_);
  }
  return *this;
}

void Forward::Cancel() noexcept {
  if (from_ == nullptr) return;
  {
    MutexLock lock(from_->mu_);
    from_->RemoveForwardLocked(to_.get());
  }
  from_ = nullptr;
  to_ = nullptr;
}

}  // namespace plexus
