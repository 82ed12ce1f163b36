#include "mailbox.h"

#include <algorithm>
#include <mutex>
#include <new>
#include <utility>

#include "plexus/core/source_location.h"
#include "plexus/exec/task_processor.h"
#include "plexus/sync/mutex.h"

namespace plexus::bus_internal {
namespace {

// Message references per segment: a segment is then 112 bytes, its header included, and with
// the block header of the message allocator, which it comes from, one 128-byte block.
constexpr std::uint32_t kSegmentSlots = 12;
// Message references in a mailbox's first segment. Most subscriptions receive their subscribe
// notice and then little or nothing for a long time, and the tail segment stays allocated
// while the mailbox is idle: a first segment of one slot keeps an idle subscription 112 bytes
// smaller. The second message brings a full segment; the small one is freed, never recycled.
constexpr std::uint32_t kFirstSegmentSlots = 1;
// Spare segments a mailbox keeps for reuse; more are freed.
constexpr std::uint32_t kMaxSpares = 32;

static_assert(kSegmentSlots <= UINT8_MAX && kMaxSpares <= UINT8_MAX, "indices are bytes");

}  // namespace

static_assert(sizeof(Mailbox) == 2 * kCacheLineSize,
              "one line for the producers, one for the consumer (mailbox.h, Layout)");

// A segment's slots follow its header in the same block; their number is the segment's own.
//
// Full segments come from the message allocator: a segment is made by a publisher and, once
// the turn has emptied it and the spares are full, freed by the subscription's thread, the
// pattern that allocator is for (a queue that swings deeper than the spares hold, under a
// burst, would otherwise cost a malloc and a cross-thread free per kSegmentSlots messages).
// A first, one-slot segment comes from the global allocator: it is the one an idle
// subscription keeps, and a block of the message allocator would take 128 bytes for its 24.
struct Mailbox::Segment {
  static Segment* Make(std::uint32_t slot_count) {
    static_assert(sizeof(Segment) % alignof(Message*) == 0, "the slots follow the header");
    const std::size_t bytes = Bytes(slot_count);
    void* block = slot_count == kSegmentSlots ? AllocateMessage(bytes) : ::operator new(bytes);
    return new (block) Segment(slot_count);
  }
  static void Free(Segment* segment) noexcept {
    const std::uint32_t slot_count = segment->slot_count;
    segment->~Segment();
    if (slot_count == kSegmentSlots) {
      FreeMessage(segment, Bytes(slot_count));
    } else {
      ::operator delete(segment);
    }
  }
  Message*& Slot(std::uint32_t i) noexcept { return reinterpret_cast<Message**>(this + 1)[i]; }

  std::atomic<Segment*> next{nullptr};  // the queue's next segment, or the next spare
  const std::uint32_t slot_count;

 private:
  static constexpr std::size_t Bytes(std::uint32_t slot_count) noexcept {
    return sizeof(Segment) + slot_count * sizeof(Message*);
  }
  explicit Segment(std::uint32_t n) noexcept : slot_count(n) {}
  ~Segment() = default;
};

Mailbox::Mailbox(QueuePolicy policy, std::uint32_t capacity, std::uint32_t high_water,
                 std::uint32_t low_water) noexcept
    : bounded_(policy != QueuePolicy::kUnbounded),
      drop_oldest_(policy == QueuePolicy::kDropOldest),
      tail_slot_(0),
      capacity_(capacity),
      high_water_(high_water),
      low_water_(std::min(low_water, high_water)) {}

Mailbox::~Mailbox() {
  for (std::uint64_t i = taken_.load(); i < enqueued_.load(); ++i) {
    PopHead()->DecRef(SourceLocation::current(), this);
  }
  for (Segment* s = head_; s != nullptr;) Segment::Free(std::exchange(s, s->next.load()));
  for (Segment* s = spares_.load(); s != nullptr;) Segment::Free(std::exchange(s, s->next.load()));
}

// -----------------------------------------------------------------------------
// Producer side
// -----------------------------------------------------------------------------

Mailbox::PushResult Mailbox::PushBounded(Message* message, std::uint64_t* seq,
                                         std::uint32_t& dropped, bool& alert_changed) {
  PushResult result;
  Message* evicted = nullptr;
  {
    MutexLock lock(mu_);
    if (closed_) return PushResult{.outcome = Outcome::kClosed};
    // A bounded queue holds capacity_ messages besides the one being handled (those a turn
    // took in its batch count as held).
    if (Depth() > capacity_) {
      if (!drop_oldest_) {
        rejected_.store(rejected_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return PushResult{.outcome = Outcome::kRejected};
      }
      dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      ++dropped;
      const std::uint64_t taken = taken_.load(std::memory_order_relaxed);
      if (enqueued_.load(std::memory_order_relaxed) == taken) {
        // Every older message is being handled already: this one is the oldest that can go.
        return PushResult{.outcome = Outcome::kDropped};
      }
      // The consumer takes under mu_ too under a bounded policy: the head is ours here.
      evicted = PopHead();
      taken_.store(taken + 1, std::memory_order_relaxed);
    }
    std::uint64_t raise_at = 0;
    result.schedule = Enqueue(message, seq, raise_at);
    if (raise_at != 0 && !alerted_) alert_changed = CheckAlertLocked(raise_at);
  }
  if (evicted != nullptr) evicted->DecRef(SourceLocation::current(), this);
  return result;
}

Mailbox::PushResult Mailbox::PushFinal(Message* message, bool& alert_changed) {
  message->AddRef(SourceLocation::current(), this);
  std::uint64_t raise_at = 0;
  bool schedule = false;
  if (bounded_) {
    MutexLock lock(mu_);
    closed_ = true;
    schedule = Enqueue(message, nullptr, raise_at);
    if (raise_at != 0 && !alerted_) alert_changed = CheckAlertLocked(raise_at);
  } else {
    closed_ = true;
    schedule = Enqueue(message, nullptr, raise_at);
    if (raise_at != 0) alert_changed = RaiseAlert(raise_at);
  }
  return PushResult{.schedule = schedule};
}

bool Mailbox::RaiseAlert(std::uint64_t depth) {
  MutexLock lock(mu_);
  return !alerted_ && CheckAlertLocked(depth);
}

bool Mailbox::Enqueue(Message* message, std::uint64_t* seq, std::uint64_t& raise_at) {
  if (tail_ == nullptr || tail_slot_ == tail_->slot_count) {
    Segment* next = tail_ == nullptr ? nullptr : spares_.load(std::memory_order_acquire);
    // Only producers (one at a time) pop, so the popped segment cannot be popped, reused and
    // pushed again under us: no ABA.
    while (next != nullptr &&
           !spares_.compare_exchange_weak(next, next->next.load(std::memory_order_relaxed),
                                          std::memory_order_acquire, std::memory_order_acquire)) {
    }
    if (next != nullptr) {
      spare_count_.fetch_sub(1, std::memory_order_relaxed);
      next->next.store(nullptr, std::memory_order_relaxed);
    } else {
      next = Segment::Make(tail_ == nullptr ? kFirstSegmentSlots : kSegmentSlots);
    }
    if (tail_ != nullptr) {
      tail_->next.store(next, std::memory_order_release);
    } else {
      // The first message: the consumer looks at head_ only once enqueued_ says it arrived.
      head_ = next;
    }
    tail_ = next;
    tail_slot_ = 0;
  }
  tail_->Slot(tail_slot_++) = message;
  const std::uint64_t enqueued = enqueued_.load(std::memory_order_relaxed) + 1;
  // Publishes the slot to the consumer; sequentially consistent, against the consumer's
  // end-of-turn check of scheduled_ (one of the two sees the other).
  enqueued_.store(enqueued, std::memory_order_seq_cst);
  if (seq != nullptr) *seq = enqueued;
  // Depth from a recent count of handled messages: an overestimate, refreshed (a read of the
  // consumer's counter) only when it would set a new highest depth or reach high water.
  const std::uint64_t gone = dropped_.load(std::memory_order_relaxed);
  std::uint64_t depth = enqueued - handled_seen_ - gone;
  if (depth > max_depth_.load(std::memory_order_relaxed) || depth >= high_water_) {
    handled_seen_ = handled_.load(std::memory_order_relaxed);
    depth = enqueued - std::min(enqueued, handled_seen_ + gone);
    if (depth > max_depth_.load(std::memory_order_relaxed)) {
      max_depth_.store(static_cast<std::uint32_t>(std::min<std::uint64_t>(depth, UINT32_MAX)),
                       std::memory_order_relaxed);
    }
    // A stale flag only costs a look under the lock.
    if (depth >= high_water_ && !alerted_flag_.load(std::memory_order_relaxed)) [[unlikely]] {
      raise_at = depth;
    }
  }
  return !scheduled_.load(std::memory_order_seq_cst) &&
         !scheduled_.exchange(true, std::memory_order_acq_rel);
}

Message* Mailbox::PopHead() {
  if (head_slot_ == head_->slot_count) {
    Segment* next = head_->next.load(std::memory_order_acquire);
    RetireSegment(std::exchange(head_, next));
    head_slot_ = 0;
  }
  return head_->Slot(head_slot_++);
}

void Mailbox::RetireSegment(Segment* segment) {
  if (segment->slot_count != kSegmentSlots ||
      spare_count_.load(std::memory_order_relaxed) >= kMaxSpares) {
    Segment::Free(segment);
    return;
  }
  spare_count_.fetch_add(1, std::memory_order_relaxed);
  Segment* top = spares_.load(std::memory_order_relaxed);
  do {
    segment->next.store(top, std::memory_order_relaxed);
  } while (!spares_.compare_exchange_weak(top, segment, std::memory_order_release,
                                          std::memory_order_relaxed));
}

// -----------------------------------------------------------------------------
// Consumer side
// -----------------------------------------------------------------------------

std::uint32_t Mailbox::Take(Message** batch) {
  std::unique_lock<sync_internal::WordMutex> lock;
  if (bounded_) lock = std::unique_lock(mu_);
  const std::uint64_t taken = taken_.load(std::memory_order_relaxed);
  const std::uint64_t available = enqueued_.load(std::memory_order_acquire) - taken;
  const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(available, kTakeBatch));
  // A run of slots at a time (PopHead per message would cost a call and the segment check for
  // each): the segment is left only when its run is done.
  for (std::uint32_t i = 0; i < n;) {
    if (head_slot_ == head_->slot_count) {
      Segment* next = head_->next.load(std::memory_order_acquire);
      RetireSegment(std::exchange(head_, next));
      head_slot_ = 0;
    }
    const std::uint32_t run = std::min<std::uint32_t>(n - i, head_->slot_count - head_slot_);
    Message** slots = &head_->Slot(head_slot_);
    for (std::uint32_t j = 0; j < run; ++j) batch[i + j] = slots[j];
    i += run;
    head_slot_ = static_cast<std::uint8_t>(head_slot_ + run);
  }
  if (n != 0) taken_.store(taken + n, std::memory_order_relaxed);
  return n;
}

bool Mailbox::EndTurn() noexcept {
  scheduled_.store(false, std::memory_order_seq_cst);
  // A message that came in meanwhile saw the turn scheduled and scheduled nothing: take the
  // turn back, unless a producer has scheduled a new one already.
  return enqueued_.load(std::memory_order_seq_cst) == taken_.load(std::memory_order_relaxed) ||
         scheduled_.exchange(true, std::memory_order_acq_rel);
}

bool Mailbox::RecheckAlert() {
  if (!alerted_flag_.load(std::memory_order_relaxed)) return false;
  MutexLock lock(mu_);
  return alerted_ && CheckAlertLocked(Depth());
}

// -----------------------------------------------------------------------------
// Depth and alerts
// -----------------------------------------------------------------------------

std::uint64_t Mailbox::Depth() const noexcept {
  const std::uint64_t enqueued = enqueued_.load(std::memory_order_acquire);
  const std::uint64_t gone =
      handled_.load(std::memory_order_relaxed) + dropped_.load(std::memory_order_relaxed);
  return enqueued > gone ? enqueued - gone : 0;
}

bool Mailbox::Alerted() const {
  MutexLock lock(mu_);
  return alerted_;
}

bool Mailbox::CheckAlertLocked(std::uint64_t depth) {
  const bool now = alerted_ ? depth > low_water_ : depth >= high_water_;
  if (now == alerted_) return false;
  alerted_ = now;
  alert_depth_.store(static_cast<std::uint32_t>(std::min<std::uint64_t>(depth, UINT32_MAX)),
                     std::memory_order_relaxed);
  alerted_flag_.store(now, std::memory_order_seq_cst);
  return true;
}

// The change is reported after the mailbox and topic locks were let go (the handler may
// publish here, which takes them), so a raise and its clear, found by different threads, could
// race to the handler. One thread reports at a time, always the latest state against the one
// last reported, so the reports for one queue alternate raise, clear, raise... A thread that
// finds another reporting leaves its change to it: the reporter looks again after letting go.
// A change that is undone before it is reported is not reported at all (the counts stay paired).
void Mailbox::ReportAlertChanges(const std::string& subscription_id) {
  for (;;) {
    if (alerted_flag_.load(std::memory_order_seq_cst) ==
        alert_reported_.load(std::memory_order_relaxed)) {
      return;
    }
    if (alert_reporting_.exchange(true, std::memory_order_seq_cst)) return;
    for (;;) {
      const bool now = alerted_flag_.load(std::memory_order_seq_cst);
      if (now == alert_reported_.load(std::memory_order_relaxed)) break;
      alert_reported_.store(now, std::memory_order_relaxed);
      ReportQueueAlertChange("bus/" + subscription_id, now,
                             alert_depth_.load(std::memory_order_relaxed), high_water_);
    }
    alert_reporting_.store(false, std::memory_order_seq_cst);
  }
}

void Mailbox::ReportFinalClear(const std::string& subscription_id) {
  if (alert_reported_.load(std::memory_order_relaxed)) {
    ReportQueueAlertChange("bus/" + subscription_id, false, 0, high_water_);
  }
}

}  // namespace plexus::bus_internal
