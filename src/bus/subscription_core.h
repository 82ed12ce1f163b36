// The shared state of one subscription: its filter, its lifecycle, its delivery (a mailbox whose
// turns run on a thread pool, or the publisher's thread) and its counters. Internal to the bus;
// the public face is plexus::Subscription.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mailbox.h"
#include "message_refs.h"
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
// larger id is accepted, so a publisher reading it needs no lock; each array keeps the one it
// replaced (a publisher may still be reading it) until the subscription goes.
struct FilterWords {
  FilterWords(std::size_t n, std::unique_ptr<FilterWords> older)
      : count(n), words(new std::atomic<std::uint64_t>[n]), replaced(std::move(older)) {
    for (std::size_t i = 0; i < n; ++i) words[i].store(0, std::memory_order_relaxed);
  }
  std::size_t count;
  std::unique_ptr<std::atomic<std::uint64_t>[]> words;
  std::unique_ptr<FilterWords> replaced;
};

class SubscriptionCore final : public RefCounted {
 public:
  SubscriptionCore(Ref<Topic> topic, MessageHandler handler, SubscriptionOptions&& options);

  // Called by its topic's fan-out (or its own Subscribe), always under the topic's lock: that
  // lock is what serializes the mailbox's producers (mailbox.h). A queued delivery takes its
  // reference from `refs`, with `remaining` deliveries of the fan-out left, this one included
  // (message_refs.h). Counts into `dropped` the older messages dropped for it. Sets
  // `alert_changed` when the queue's alert state changed: the fan-out then calls
  // ReportAlertChanges once it let go of the topic's lock.
  DeliverOutcome Deliver(Message* message, WaitTicket* ticket, MessageRefs& refs,
                         std::uint32_t remaining, std::uint32_t& dropped, bool& alert_changed);
  // Reports the alert state to the executor's alert machinery (log and handler) if it differs
  // from the last state reported. Called with no lock held: the handler is user code, and may
  // publish to this very subscription.
  void ReportAlertChanges() { mailbox_.ReportAlertChanges(id_); }

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
  ~SubscriptionCore() override;

  // Whether the filter lets `message` through. Inline for the usual case, a subscription
  // with no filter set (two loads); a filter is checked out of line.
  bool Passes(const Message& message) const noexcept {
    if (!selective_.load(std::memory_order_relaxed) &&
        formats_.load(std::memory_order_relaxed) == 0) [[likely]] {
      return true;
    }
    return PassesFilter(message);
  }
  bool PassesFilter(const Message& message) const noexcept;
  void DeliverFinal(Message* message);
  // The job a pool thread runs while the mailbox has messages.
  void RunTurn();
  void ScheduleTurn();
  void Invoke(Message* message);

  // Layout, by who writes what, so that a publisher and the turn running on two cores do not
  // pass a cache line back and forth per message: first what both only read (configuration,
  // the callback, the filter; the counters only publishers write close it, beside the filter
  // they read), then the mailbox (its producers' line, then its consumer's: mailbox.h), then
  // what the turn writes. Three lines for the first group, six in all (384 bytes).

  // Read by the turn (and set up once).
  const std::string id_;
  MessageHandler handler_;      // run by one thread at a time; reset after the final message
  ThreadPool* pool_ = nullptr;  // the pool the turns run on
  Ref<ThreadPool> own_pool_;    // kDedicatedThread: a one-thread pool of its own
  // Written once before it is queued; compared with every message the consumer handles.
  std::atomic<Message*> final_message_{nullptr};
  const std::uint32_t batch_limit_;
  std::atomic<std::uint32_t> waiters_{0};  // joiners and PublishAndWait callers waiting
  // Read by publishers.
  const Ref<Topic> topic_;
  const DeliveryMode mode_;
  std::atomic<std::uint32_t> formats_{0};
  // The current type filter (owning it, and through it the ones it replaced).
  std::atomic<FilterWords*> words_{nullptr};
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
  std::atomic<bool> selective_{false};
  // Written by publishers: messages the filter refused, and (kSynchronous, which has no use for
  // its mailbox) messages run inline.
  std::atomic<std::uint64_t> filtered_{0};
  std::atomic<std::uint64_t> sync_queued_{0};
  // One lock for every subscription's filter changes, which are rare. A leaf.
  static sync_internal::AnnotatedMutex filter_mu_;

  Mailbox mailbox_;

  // Written by the turn (or, kSynchronous, the publisher running the callback).
  alignas(kCacheLineSize) std::atomic<bool> final_started_{false};
  std::atomic<bool> final_done_{false};  // waited for by joiners
  std::atomic<std::uint64_t> dispatched_{0};
  std::atomic<std::uint64_t> failed_{0};
};

}  // namespace plexus::bus_internal
