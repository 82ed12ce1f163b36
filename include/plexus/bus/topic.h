// -----------------------------------------------------------------------------
// plexus/bus/topic.h
// -----------------------------------------------------------------------------
//
// Topic is a named channel of messages (Asterisk's stasis_topic). Publishing a message on a
// topic delivers it to every current subscription of the topic (subscription.h) and, through
// forwards (ForwardAll), to the subscriptions of every topic it forwards into.
//
// Semantics (Asterisk's, with its known faults mended):
//   * Order: the fan-out of one topic is serialized, so every subscriber of a topic sees that
//     topic's messages in the same order; messages that one thread publishes reach a subscriber
//     in that thread's order, even through different child topics forwarded into one parent.
//   * Forwarding re-publishes along forward edges on the publisher's thread, visiting each
//     topic once per publish: a cycle terminates and a diamond delivers once (Asterisk's
//     flattened lists overflow the stack on a cycle and duplicate on a diamond).
//   * Publishing takes no lock that a subscriber holds; pool and dedicated-thread callbacks run
//     after the publisher has left. Synchronous subscriptions run their callback on the
//     publisher's thread, inside the topic's fan-out (which is why it is serialized), so a
//     synchronous callback must not wait for another thread that publishes on this topic.
//   * Lock order. A synchronous callback runs holding its topic's lock, so one that publishes on
//     another topic orders the two topics: a synchronous subscriber of A publishing on B while
//     one of B publishes on A can deadlock two publishing threads. Per-topic order cannot be
//     kept without holding that order across the callback, so plexus does not prevent this: it
//     reports it. A topic's lock is a plexus::RecursiveMutex whose lock class is named after
//     the topic (lock_order.h), and a synchronous subscription's callback lock shares its
//     topic's class, so with lock-order validation on the first publish that takes the
//     opposite order is reported (or refused, with LockOrderAction::kRefuse) before it can
//     deadlock. Topics of one name share a class: give topics that order each other distinct
//     names.
//   * PublishAndWait waits for one subscriber *after* leaving the fan-out: the topic's other
//     publishers are not held up (Asterisk waits holding the topic lock).
//   * Subscribe and unsubscribe announce themselves (subscription_change.h): to the subscription
//     itself, and to the subscriptions of the topic (and of the topics it forwards into) that
//     listen to subscription changes (subscription.h), not to every subscriber as in Asterisk.
//
// A topic with no subscription and no forward costs a publisher a relaxed load and a relaxed
// add (its count of publishes nobody heard).
//
// Lifetime: Ref<Topic>. A subscription and a forward hold their topics; the topic holds its
// subscriptions only until they unsubscribe, so dropping references in any order is safe.
//
// Thread safety: thread-safe. Publish may be called from any thread, including from a callback
// of one of the topic's own subscriptions.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/lock_order.h"
#include "plexus/sync/mutex.h"

namespace plexus {

class Subscription;
class Forward;
class Topic;
Forward ForwardAll(const Ref<Topic>& from, const Ref<Topic>& to,
                   SourceLocation where = SourceLocation::current());
namespace bus_internal {
struct FanOutAftermath;
class InlineReceiver;
class MessageRefs;
class SubscriptionCore;
class TopicSnapshot;
struct WaitTicket;
template <class T>
class LiveRegistry;
}  // namespace bus_internal

// What one Publish did, summed over every subscription it reached (forwarded ones included).
struct PublishResult {
  std::uint32_t delivered = 0;  // subscriptions that queued the message or ran their callback
  std::uint32_t filtered = 0;   // subscriptions whose filter refused it
  std::uint32_t rejected = 0;   // bounded queues (QueuePolicy::kRejectNew) that were full
  // Messages dropped by full kDropOldest queues: an older one for this, or this one where
  // every older one is being handled already.
  std::uint32_t dropped = 0;
};

// A snapshot of a topic's counters.
struct TopicStats {
  std::string name;
  std::string description;
  std::uint64_t id = 0;
  std::size_t subscribers = 0;     // current direct subscriptions
  std::size_t forwards_out = 0;    // topics this one forwards into
  std::uint64_t published = 0;     // publishes here, subscription notices too (bus_stats.h)
  std::uint64_t forwarded_in = 0;  // messages that arrived through a forward
  std::uint64_t deliveries = 0;    // messages handed to its subscriptions
};

class Topic final : public RefCounted {
 public:
  // A new topic. Names need not be unique (unlike Asterisk's registry, which silently hands back
  // an existing topic); use a TopicPool for get-or-create by name.
  static Ref<Topic> Create(std::string_view name, std::string_view description = {},
                           SourceLocation where = SourceLocation::current());

  const std::string& Name() const noexcept { return name_; }
  const std::string& Description() const noexcept { return description_; }
  // Process-unique.
  std::uint64_t Id() const noexcept { return id_; }
  // Current direct subscriptions (not those of topics it forwards into).
  std::size_t SubscriberCount() const noexcept {
    return subscriber_count_.load(std::memory_order_relaxed);
  }

  // Whether a message published now would reach anything: a subscription of this topic or a
  // forward out of it (a forward into a topic without subscribers counts). One relaxed load,
  // no lock; the answer may be stale by the time the caller acts on it.
  bool HasReceivers() const noexcept { return receivers_.load(std::memory_order_relaxed) != 0; }

  // Delivers `message` to every subscription of this topic and of the topics it forwards
  // into. A null message is misuse (reported; nothing published).
  PublishResult Publish(const Ref<Message>& message,
                        SourceLocation where = SourceLocation::current());

  // As above, handing the caller's reference over to the publish: the last queue it fills
  // gets that reference instead of a new one, and the publish drops it when no queue took the
  // message. `message` is empty afterwards, always. Chosen for a temporary
  // (`topic->Publish(Message::Create(...))`) and for `topic->Publish(std::move(m))`; it
  // delivers exactly as the const& overload does, and saves the atomic read-modify-write of
  // the caller dropping its reference afterwards; with a single pool or dedicated-thread
  // subscriber it does not touch the message's count at all. A message kept for later use
  // (published again, or inspected afterwards) goes through the const& overload.
  PublishResult Publish(Ref<Message>&& message, SourceLocation where = SourceLocation::current());

  // Makes a message of `type` carrying `value` and publishes it (handing its one reference to
  // the publish); nothing is made for a declined type.
  template <class T>
  PublishResult Publish(const TypedMessageType<T>& type, T value,
                        SourceLocation where = SourceLocation::current()) {
    if (type.get() == nullptr || type->IsDeclined()) return {};
    return Publish(type.Make(std::move(value), where), where);
  }

  // Publishes as Publish does, then waits until `subscriber` has handled the message (its
  // callback returned) — unless its filter refused it or its bounded queue rejected it, or it
  // is not reached by this topic, which return at once. Waiting for a pool or dedicated-thread
  // subscriber from its own callback is misuse (it would wait for itself); a synchronous
  // subscriber's callback runs inside the publish, so nothing waits and nothing is reported.
  // Other publishers of the topic proceed meanwhile.
  PublishResult PublishAndWait(const Ref<Message>& message, const Subscription& subscriber,
                               SourceLocation where = SourceLocation::current());

  TopicStats Stats() const;

 private:
  friend class Subscription;
  friend class Forward;
  friend class CachingTopic;
  friend class bus_internal::SubscriptionCore;
  friend class bus_internal::LiveRegistry<Topic>;
  friend Forward ForwardAll(const Ref<Topic>&, const Ref<Topic>&, SourceLocation);

  Topic(std::string_view name, std::string_view description);
  ~Topic() override;

  // `exclude`: a subscription this publish skips (a subscribe notice's own subscription, which
  // had it already). `notice`: deliver only to the subscriptions that listen to others'
  // subscription changes (subscription.h), along forwards as well.
  // `owned`: the publish owns one reference to `message` (the caller's, detached), which the
  // last queue it fills gets, or which it drops when done.
  PublishResult PublishImpl(Message* message, bus_internal::WaitTicket* ticket, bool notice = false,
                            const bus_internal::SubscriptionCore* exclude = nullptr,
                            bool owned = false);
  // Delivers to this topic's own subscriptions; appends its forward targets to `next`.
  // `origin`: the publish started here (counted as published, not as forwarded in).
  template <class Targets>
  void FanOut(bus_internal::MessageRefs& refs, Message* message, bus_internal::WaitTicket* ticket,
              bool notice, const bus_internal::SubscriptionCore* exclude, bool origin,
              PublishResult& result, Targets& next);
  // The outermost fan-out's end, however it ends, when snapshots were retired meanwhile: moves
  // them into `after`, made if need be, which frees them once the lock is let go.
  void TakeRetiredLocked(std::unique_ptr<bus_internal::FanOutAftermath>& after) noexcept
      PLEXUS_REQUIRES(mu_);
  // Snapshot changes (copy on write), all through EditSnapshotLocked: `edit` changes a copy of
  // the current snapshot and says whether it changed anything; the copy then replaces it.
  template <class Edit>
  bool EditSnapshotLocked(Edit edit) PLEXUS_REQUIRES(mu_);
  void AddSubscriberLocked(bus_internal::SubscriptionCore* core, bool listens) PLEXUS_REQUIRES(mu_);
  bool RemoveSubscriberLocked(bus_internal::SubscriptionCore* core) PLEXUS_REQUIRES(mu_);
  // Adds or removes `core` from the subscriptions that hear others' subscription changes.
  void SetListenerLocked(bus_internal::SubscriptionCore* core, bool listens) PLEXUS_REQUIRES(mu_);
  // A caching topic's fast path: the fan-out calls `receiver` directly for every message published
  // here (not for notices), where it would have delivered to `subscription` (synchronous, of
  // this topic), which keeps its place among the listeners and its final message. False if the
  // subscription is not subscribed here.
  bool DeliverInline(const Subscription& subscription, Ref<bus_internal::InlineReceiver> receiver);
  bool HasForwardLocked(const Topic* to) const PLEXUS_REQUIRES(mu_);
  void AddForwardLocked(Topic* to) PLEXUS_REQUIRES(mu_);
  bool RemoveForwardLocked(Topic* to) PLEXUS_REQUIRES(mu_);

  const std::uint64_t id_;
  const std::string name_;
  const std::string description_;
  std::atomic<std::uint32_t> subscriber_count_{0};
  // Subscriptions plus forward edges: zero lets a publisher skip the fan-out entirely.
  std::atomic<std::uint32_t> receivers_{0};
  // Publishes that reached a fan-out: written under mu_ only (a plain increment, no
  // read-modify-write), read without it. Those that found no receiver never take the lock and
  // are counted apart; Stats sums the two.
  std::atomic<std::uint64_t> published_{0};
  std::atomic<std::uint64_t> published_unheard_{0};
  std::atomic<std::uint64_t> forwarded_in_{0};
  std::atomic<std::uint64_t> deliveries_{0};
  // The lock-order class of mu_ (and of its synchronous subscriptions' callback locks), named
  // after the topic: see "Lock order" above. Its id is registered on the first validated use
  // only, so with validation off a topic pays these 16 bytes and nothing else.
  //
  // Memory: a topic is 232 bytes, which glibc serves from its 240-byte chunks (232 usable). The
  // lock keeps its class in 16 bytes (CompactLockClassRef: the LockClass pointer, with no creation
  // site beside it), not 24.
  const LockClass lock_class_;
  // Serializes fan-outs and snapshot changes. Recursive: a synchronous callback may publish on
  // the topic it is called from, or unsubscribe itself.
  mutable RecursiveMutex mu_;
  // Immutable once published; replaced whole (copy on write) so a fan-out that a synchronous
  // callback interrupts (by subscribing or unsubscribing on this thread) keeps iterating the
  // snapshot it started with.
  bus_internal::TopicSnapshot* snapshot_ PLEXUS_GUARDED_BY(mu_) = nullptr;
  // Snapshots replaced during a fan-out on this thread: freed when the outermost one ends.
  std::vector<bus_internal::TopicSnapshot*> retired_ PLEXUS_GUARDED_BY(mu_);
  std::uint32_t fanout_depth_ PLEXUS_GUARDED_BY(mu_) = 0;
  // Intrusive links in the registry of live topics (guarded by its lock).
  Topic* prev_live_ = nullptr;
  Topic* next_live_ = nullptr;
};

// Forwards every message published on one topic into another until cancelled (Asterisk's
// stasis_forward_all). The handle owns the forward: destroying it cancels. A second forward of
// a pair that is already forwarded is refused (an inactive handle): it would deliver twice.
//
// Thread safety: a Forward handle is thread-compatible (one owner); forwarding itself is safe
// against concurrent publishes: a publish that started before Cancel returned may still go
// through the forward, none that starts after.
class Forward {
 public:
  Forward() noexcept = default;
  Forward(Forward&& other) noexcept;
  Forward& operator=(Forward&& other) noexcept;
  Forward(const Forward&) = delete;
  Forward& operator=(const Forward&) = delete;
  ~Forward() { Cancel(); }

  // Stops forwarding; idempotent.
  void Cancel() noexcept;
  bool IsActive() const noexcept { return from_ != nullptr; }
  const Ref<Topic>& From() const noexcept { return from_; }
  const Ref<Topic>& To() const noexcept { return to_; }

 private:
  friend Forward ForwardAll(const Ref<Topic>&, const Ref<Topic>&, SourceLocation);
  Ref<Topic> from_;
  Ref<Topic> to_;
};

// ForwardAll(from, to) (declared above): forwards `from` into `to`. Null topics are misuse;
// forwarding a topic into itself, or a pair that is already forwarded, gives an inactive handle
// (nothing to do).

}  // namespace plexus
