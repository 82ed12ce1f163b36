// Mailbox is the message queue of one subscription that is not synchronous: publishers push
// message references into it, and the subscription's turn (one pool thread at a time) takes
// them out in order and runs the callback. It keeps the queue's bookkeeping too: the depth and
// the highest depth, the congestion alert (high and low water), the bounded policies' drops and
// refusals, whether a turn is scheduled, and how far the consumer got (for PublishAndWait).
//
// The queue is a list of segments of kSegmentSlots references, recycled through a short list of
// spares, so steady-state delivery allocates nothing. The first segment is made by the first
// push: a mailbox that never receives a message (a synchronous subscription's) costs no segment,
// and that first one has a single slot, so a mailbox idle after one message (a subscription
// that has handled its subscribe notice) keeps a small block rather than a full segment.
//
// Thread-safety contract:
//   * Producer side (Push, PushFinal): any thread, one at a time. The mailbox does not
//     serialize its producers: its owner does. A subscription's pushes all run under its
//     topic's lock (the fan-out's, or the subscribe's), and its final push follows the
//     unsubscribe's removal from the topic under that lock, so every other thread's push
//     happens before it and pushes that come after it run on its own thread (a synchronous
//     callback that unsubscribed, inside a fan-out still walking the old snapshot). An
//     unbounded mailbox's push therefore takes no lock: a few stores, and one sequentially
//     consistent store that publishes the slot. The mailbox lock (a sync_internal::WordMutex, a
//     leaf held for a few stores, never with user code under it) is taken by a bounded policy's
//     push, whose drops and refusals race the consumer's take, and by the rare alert changes.
//   * Consumer side (Take, LooksEmpty, NoteHandled, NoteBatchDone, EndTurn, RecheckAlert): the
//     running turn only, which Push's `schedule` hands out one at a time. The consumer reads
//     the queue without the lock, except under a bounded policy, whose producers drop at the
//     head: there Take takes the lock as well.
//   * CancelTurn: the thread that was told to schedule a turn and could not.
//   * Everything else (counters, Depth, Alerted, ReportAlertChanges): any thread.
//
// Layout: the fields producers write (the tail, the counters of what was queued, the lock,
// the scheduled flag) fill one cache line, and those the consumer writes (the head, the counts
// of what was taken and handled, the spares) another, so a publisher and the turn that run at
// once on two cores do not pass a line back and forth per message. The two lines cost nothing
// beyond their contents: each side's fields are packed to fit one line (slot indices and the
// spare count are bytes, the queued count is the last message's position, what changes only
// with the alert sits on the consumer's line), so the mailbox is two lines, 13 bytes of them
// padding, where the fields laid out in declaration order with the two groups aligned apart
// took three. Its owner keeps its own consumer-written fields on a line after it.

#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "plexus/bus/message.h"
#include "plexus/bus/subscription.h"
#include "plexus/core/config.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/internal/word_mutex.h"
#include "plexus/sync/mutex.h"

namespace plexus::bus_internal {

class Mailbox {
 public:
  // Messages Take hands out at most per call (per lock acquisition under a bounded policy).
  static constexpr std::uint32_t kTakeBatch = 64;

  // `capacity`: the most messages a bounded queue holds besides the one being handled (at least
  // 1). `low_water` is at most `high_water`.
  Mailbox(QueuePolicy policy, std::uint32_t capacity, std::uint32_t high_water,
          std::uint32_t low_water) noexcept;
  // Releases the messages still queued (a mailbox whose turns can no longer run: its pool was
  // shut down under it) and frees the segments.
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // --- Producer side ---------------------------------------------------------------------

  enum class Outcome : std::uint8_t {
    kQueued,
    kClosed,    // the final message was queued already: nothing follows it
    kRejected,  // kRejectNew, full (counted in Rejected)
    kDropped,   // kDropOldest, full, and every older message is being handled: this one was
                // dropped instead (counted in Dropped)
  };
  struct PushResult {
    Outcome outcome = Outcome::kQueued;
    // The caller schedules a turn (no turn was scheduled or running).
    bool schedule = false;
  };

  // Queues `message`, unless the mailbox is closed or (bounded policies) full. The caller took
  // a reference for the queue (keyed to this mailbox under reference debugging): kQueued passes
  // it to the queue, any other outcome leaves it with the caller. A fan-out takes its queues'
  // references together (message_refs.h), which is why the push does not take its own. Adds to the
  // caller's tallies, as a fan-out keeps them: `dropped` counts a message kDropOldest dropped (this
  // one or an older one), and `alert_changed` is set when the alert state changed (call
  // ReportAlertChanges once no lock is held). `seq`, when given, receives the message's position in
  // the queue (1 for the first message ever queued). Inline, and its results small: the unbounded
  // path is every publish's, per subscriber.
  PushResult Push(Message* message, std::uint64_t* seq, std::uint32_t& dropped,
                  bool& alert_changed) {
    if (bounded_) return PushBounded(message, seq, dropped, alert_changed);
    if (closed_) [[unlikely]] {
      return PushResult{.outcome = Outcome::kClosed};
    }
    std::uint64_t raise_at = 0;
    const bool schedule = Enqueue(message, seq, raise_at);
    if (raise_at != 0) [[unlikely]] {
      alert_changed = RaiseAlert(raise_at);
    }
    return PushResult{.schedule = schedule};
  }
  // Queues the final message whatever the policy and depth, taking a reference, and closes the
  // mailbox. Called once.
  PushResult PushFinal(Message* message, bool& alert_changed);

  // --- Consumer side (the running turn) --------------------------------------------------

  // Takes up to kTakeBatch messages in order. The references pass to the caller, who lets go
  // of each (DecRef with this mailbox as holder) once handled.
  std::uint32_t Take(Message** batch);
  // Whether nothing is queued beyond what was taken: a cheap poll for a turn about to end.
  bool LooksEmpty() const noexcept {
    return enqueued_.load(std::memory_order_relaxed) == taken_.load(std::memory_order_relaxed);
  }
  // One message of the batch was handled (its callback returned).
  void NoteHandled() noexcept {
    handled_.store(handled_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // Every message taken so far left the queue: publishes it for WaitHandled.
  void NoteBatchDone() noexcept {
    done_upto_.store(taken_.load(std::memory_order_relaxed), std::memory_order_seq_cst);
  }
  // Ends the turn: true when it ended, false when a message came in that saw the turn still
  // scheduled (the turn then goes on, still scheduled).
  bool EndTurn() noexcept;
  // After a batch, while alerted: whether the depth fell to low water (then call
  // ReportAlertChanges).
  bool RecheckAlert();

  // A turn was to be scheduled and could not be: the next push schedules again.
  void CancelTurn() noexcept { scheduled_.store(false, std::memory_order_seq_cst); }

  // --- Any thread ------------------------------------------------------------------------

  // Reports the alert state to the executor's alert machinery (as "bus/<subscription_id>") if
  // it differs from the last state reported. Call with no lock held: the alert handler is user
  // code, and may publish to this very mailbox.
  void ReportAlertChanges(const std::string& subscription_id);
  // Reports the clear of an alert that was raised and never cleared (the mailbox is going).
  void ReportFinalClear(const std::string& subscription_id);

  // Messages waiting and being handled.
  std::uint64_t Depth() const noexcept;
  // Every message up to this position left the queue (handled or dropped).
  std::uint64_t DoneUpto() const noexcept { return done_upto_.load(std::memory_order_seq_cst); }
  std::uint64_t Queued() const noexcept { return enqueued_.load(std::memory_order_relaxed); }
  std::uint64_t Dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }
  std::uint64_t Rejected() const noexcept { return rejected_.load(std::memory_order_relaxed); }
  std::uint32_t MaxDepth() const noexcept { return max_depth_.load(std::memory_order_relaxed); }
  bool Alerted() const PLEXUS_EXCLUDES(mu_);
  std::uint32_t HighWater() const noexcept { return high_water_; }
  std::uint32_t LowWater() const noexcept { return low_water_; }

 private:
  struct Segment;

  // Push under kDropOldest or kRejectNew.
  PushResult PushBounded(Message* message, std::uint64_t* seq, std::uint32_t& dropped,
                         bool& alert_changed);
  // Queues `message` (its reference already taken); says whether to schedule a turn. Sets
  // `raise_at` to the depth when it reached high water while no alert is raised: the caller
  // then raises it under mu_ (RaiseAlert, or CheckAlertLocked when it holds mu_ already).
  bool Enqueue(Message* message, std::uint64_t* seq, std::uint64_t& raise_at);
  // Raises the alert for `depth` unless it is raised already; true when it changed.
  bool RaiseAlert(std::uint64_t depth) PLEXUS_EXCLUDES(mu_);
  // Updates the alert state for `depth`; true when it changed.
  bool CheckAlertLocked(std::uint64_t depth) PLEXUS_REQUIRES(mu_);
  // The consumer, or a producer dropping under mu_ (bounded policies).
  Message* PopHead();
  void RetireSegment(Segment* segment);

  // Producer line: written by publishers on every push (the tail, the counts), read by them
  // (the limits), and by the consumer only to see what arrived (enqueued_) and when its turn
  // ends (scheduled_). The producers' own fields (closed_, the tail, handled_seen_) are
  // guarded by the owner's serialization of pushes (see the contract above), which the
  // analysis cannot name; under a bounded policy mu_ is held over them as well.
  alignas(kCacheLineSize) mutable sync_internal::WordMutex mu_;
  const bool bounded_;      // policy other than kUnbounded
  const bool drop_oldest_;  // kDropOldest (else a bounded mailbox is kRejectNew)
  bool closed_ = false;     // the final message was queued
  bool alerted_ PLEXUS_GUARDED_BY(mu_) = false;
  // The next free slot of tail_ (its slot count: full).
  std::uint8_t tail_slot_;
  std::atomic<bool> scheduled_{false};     // a turn is queued on the pool or running
  std::atomic<bool> alerted_flag_{false};  // alerted_, readable without the lock
  const std::uint32_t capacity_;
  const std::uint32_t high_water_;
  std::atomic<std::uint32_t> max_depth_{0};
  Segment* tail_ = nullptr;
  std::uint64_t handled_seen_ = 0;  // a recent handled_, for depth
  // Messages ever queued (the last one's position): written by producers, read by the consumer.
  std::atomic<std::uint64_t> enqueued_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> rejected_{0};

  // Consumer line: owned by the running turn, and guarded by mu_ as well under a bounded policy
  // only (so not annotated: the analysis cannot express a lock that depends on the policy).
  // Producers read handled_ (for a new highest depth, or near high water) and, under a bounded
  // policy, drop at the head. The alert's details live here too: they change only when the
  // alert is raised or cleared, and the low water mark is read only then.
  alignas(kCacheLineSize) Segment* head_ = nullptr;
  std::uint8_t head_slot_ = 0;
  std::atomic<std::uint8_t> spare_count_{0};
  // The state last reported (written only by the thread reporting), and whether a thread is
  // reporting: one at a time, so one queue's raise and clear arrive in order.
  std::atomic<bool> alert_reported_{false};
  std::atomic<bool> alert_reporting_{false};
  const std::uint32_t low_water_;
  std::atomic<std::uint32_t> alert_depth_{0};  // the depth at the last change of alerted_
  std::atomic<std::uint64_t> taken_{0};        // messages taken from the queue or dropped
  std::atomic<std::uint64_t> handled_{0};      // messages whose callback returned
  std::atomic<std::uint64_t> done_upto_{0};
  std::atomic<Segment*> spares_{nullptr};  // pushed by the consumer, popped by producers
};

}  // namespace plexus::bus_internal
