// The shared state of one subscription: its mailbox (a serializer on a thread pool), its filter,
// its lifecycle and its counters. Internal to the bus; the public face is plexus::Subscription.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mailbox_mutex.h"
#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"
#include "plexus/core/config.h"
#include "plexus/core/ref.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/exec/thread_pool.h"
#include "plexus/sync/mutex.h"

namespace plexus::bus_internal {

// What PublishAndWait needs from the fan-out: where the message landed in the target's queue.
struct WaitTicket {
  const SubscriptionCore* target = nullptr;
  std::uint64_t seq = 0;  // the message's position in the target's queue; 0: not queued
};

// kDropped: the message itself was dropped (counted in `dropped`) by kDropOldest.
enum class DeliverOutcome { kDelivered, kFiltered, kRejected, kDropped };

// The type filter's bits, indexed by MessageType::Id. Replaced (never resized in place) when a
// larger id is accepted, so a publisher reading it needs no lock; old arrays are kept until the
// subscription goes.
struct FilterWords {
  explicit FilterWords(std::size_t n) : count(n), words(new std::atomic<std::uint64_t>[n]) {
    for (std::size_t i = 0; i < n; ++i) words[i].store(0, std::memory_order_relaxed);
  }
  std::size_t count;
  std::unique_ptr<std::atomic<std::uint64_t>[]> words;
};

class SubscriptionCore final : public RefCounted {
 public:
  SubscriptionCore(Ref<Topic> topic, MessageHandler handler, SubscriptionOptions&& options);

  // Called by a topic's fan-out. Counts into `dropped` the older messages dropped for it. Sets
  // `alert_changed` when the queue's alert state changed: the fan-out then calls
  // ReportAlertChanges once it let go of the topic's lock.
  DeliverOutcome Deliver(Message* message, WaitTicket* ticket, std::uint32_t& dropped,
                         bool& alert_changed);
  // Reports the alert state to the executor's alert machinery (log and handler) if it differs
  // from the last state reported. Called with no lock held: the handler is user code, and may
  // publish to this very subscription.
  void ReportAlertChanges();

  bool Unsubscribe();
  bool Join(SourceLocation where);
  // Waits until the message at `seq` left the queue (handled or dropped).
  void WaitHandled(std::uint64_t seq);
  bool IsSubscribed() const noexcept { return subscribed_.load(std::memory_order_acquire); }
  bool IsDone() const noexcept { return final_started_.load(std::memory_order_acquire); }
  bool IsSynchronous() const noexcept { return mode_ == DeliveryMode::kSynchronous; }
  // Whether the calling thread is running this subscription's callback.
  bool InOwnCallback() const noexcept;

  void AcceptType(const MessageType* type) PLEXUS_EXCLUDES(filter_mu_);
  void DeclineType(const MessageType* type) PLEXUS_EXCLUDES(filter_mu_);
  void AcceptAllTypes() PLEXUS_EXCLUDES(filter_mu_);
  void SetAcceptedFormats(MessageFormats formats) PLEXUS_EXCLUDES(filter_mu_);
  // After a filter change on a subscribed subscription: joins or leaves the topic's listeners
  // of subscription changes.
  void UpdateListening();

  SubscriptionStats Stats() const;
  const std::string& Id() const noexcept { return id_; }
  const Ref<Topic>& GetTopic() const noexcept { return topic_; }

  // Joins the topic: registers this subscription and queues (or, synchronous, runs) its own
  // subscribe notice under the topic's lock, so that notice comes before any other message;
  // then tells the topic's listeners.
  void Subscribe();
  // Whether this subscription hears the others' subscription changes: asked for explicitly, or
  // its type filter accepts the change type.
  bool ListensToChanges() const noexcept;

  // Links in the registry of live subscriptions.
  SubscriptionCore* prev_live_ = nullptr;
  SubscriptionCore* next_live_ = nullptr;

 private:
  struct Segment;

  ~SubscriptionCore() override;

  bool Passes(const Message& message) const noexcept;
  void DeliverFinal(Message* message);
  // The job a pool thread runs while the mailbox has messages.
  void RunTurn();
  void ScheduleTurn();
  void Invoke(Message* message);
  // Updates the alert state for `depth`; true when it changed, which the caller then reports
  // with ReportAlertChanges once it let go of its locks. Requires mu_.
  bool CheckAlertLocked(std::size_t depth) PLEXUS_REQUIRES(mu_);
  // Queues `message` (a reference is taken). Says whether a turn must be scheduled, and in
  // `alert_changed` whether the alert state changed (to report after unlocking); requires mu_.
  bool EnqueueLocked(Message* message, bool& alert_changed) PLEXUS_REQUIRES(mu_);
  // Takes up to kTakeBatch messages; the running turn only.
  std::uint32_t Take(Message** batch);
  Message* PopHead();  // the consumer, or a producer dropping under mu_ (bounded policies)
  void RetireSegment(Segment* segment);
  std::uint64_t Depth() const noexcept;

  // Members are grouped by who writes them, each group on cache lines of its own: what
  // publishers only read (configuration, filter), what publishers write (the tail and its
  // counters) and what the consumer writes (the head and its counters). Sharing a line between
  // a publisher's core and the consumer's would cost a transfer per message.

  // Read-mostly.
  const std::string id_;
  const Ref<Topic> topic_;
  const DeliveryMode mode_;
  const QueuePolicy policy_;
  const std::uint32_t capacity_;
  const std::uint32_t batch_limit_;
  const std::uint32_t high_water_;
  const std::uint32_t low_water_;
  ThreadPool* pool_ = nullptr;  // the pool the turns run on
  Ref<ThreadPool> own_pool_;    // kDedicatedThread: a one-thread pool of its own
  MessageHandler handler_;      // run by one thread at a time; reset after the final message
  // Written once before it is queued; compared with every message the consumer handles.
  std::atomic<Message*> final_message_{nullptr};
  // Synchronous mode: serializes callbacks (recursive: a callback may publish to itself).
  // Made for synchronous subscriptions only (the others need no such lock). Of its topic's
  // lock class (topic.h, "Lock order"): it is taken inside the topic's lock, or alone, and a
  // callback that publishes elsewhere orders the topic it runs for before the other.
  const std::unique_ptr<RecursiveMutex> sync_mu_;
  // Unsubscribed from its own callback: the final message follows when that returns.
  bool final_pending_ PLEXUS_GUARDED_BY(sync_mu_) = false;
  const bool listen_option_;  // SubscriptionOptions::subscription_changes
  // Whether the topic lists it among the listeners of subscription changes (its topic's lock).
  bool listening_ PLEXUS_GUARDED_BY(topic_->mu_) = false;
  std::atomic<bool> subscribed_{true};
  std::atomic<bool> alerted_flag_{false};      // alerted_, readable without the lock
  std::atomic<std::uint32_t> alert_depth_{0};  // the depth at the last change of alerted_
  // The state last reported (written only by the thread holding alert_reporting_), and whether
  // a thread is reporting: one at a time, so one queue's raise and clear arrive in order.
  std::atomic<bool> alert_reported_{false};
  std::atomic<bool> alert_reporting_{false};
  std::atomic<std::uint32_t> waiters_{0};  // joiners and PublishAndWait callers waiting
  std::atomic<bool> selective_{false};
  std::atomic<std::uint32_t> formats_{0};
  std::atomic<FilterWords*> words_{nullptr};
  // One lock for every subscription's filter changes, which are rare. A leaf.
  static sync_internal::AnnotatedMutex filter_mu_;
  std::vector<std::unique_ptr<FilterWords>> filter_arrays_ PLEXUS_GUARDED_BY(filter_mu_);

  // The mailbox: a queue of message references in linked segments of kSegmentSlots, recycled
  // through a spare list, so steady-state delivery allocates nothing. Producers (publishers)
  // serialize on mu_; the consumer (the running turn) reads without it — except under a bounded
  // policy, whose producers drop at the head, where the consumer takes under mu_ as well.
  //
  // Producer side.
  alignas(kCacheLineSize) mutable MailboxMutex mu_;
  bool closed_ PLEXUS_GUARDED_BY(mu_) = false;  // the final message was queued
  bool alerted_ PLEXUS_GUARDED_BY(mu_) = false;
  std::uint32_t tail_slot_ PLEXUS_GUARDED_BY(mu_) = 0;
  Segment* tail_ PLEXUS_GUARDED_BY(mu_) = nullptr;
  std::uint64_t handled_seen_ PLEXUS_GUARDED_BY(mu_) = 0;  // a recent handled_, for depth estimates
  // Messages ever queued (the last one's seq): written under mu_, read by the consumer.
  std::atomic<std::uint64_t> enqueued_{0};
  std::atomic<bool> scheduled_{false};  // a turn is queued on the pool or running
  std::atomic<std::uint32_t> max_depth_{0};
  std::atomic<std::uint64_t> queued_{0};
  std::atomic<std::uint64_t> filtered_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> rejected_{0};

  // Consumer side: owned by the running turn, and guarded by mu_ as well under a bounded policy
  // only (so not annotated: the analysis cannot express a lock that depends on the policy).
  alignas(kCacheLineSize) Segment* head_ = nullptr;
  std::uint32_t head_slot_ = 0;
  std::atomic<bool> final_started_{false};
  std::atomic<bool> final_done_{false};    // waited for by joiners
  std::atomic<std::uint64_t> taken_{0};    // messages taken from the queue or dropped
  std::atomic<std::uint64_t> handled_{0};  // messages whose callback returned
  std::atomic<std::uint64_t> dispatched_{0};
  std::atomic<std::uint64_t> failed_{0};
  // Every seq up to this left the queue; waited for by PublishAndWait.
  std::atomic<std::uint64_t> done_upto_{0};
  std::atomic<Segment*> spares_{nullptr};  // pushed by the consumer, popped under mu_
  std::atomic<std::uint32_t> spare_count_{0};
};

}  // namespace plexus::bus_internal
