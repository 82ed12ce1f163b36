#include "plexus/bus/subscription.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string>

#include "message_type_registry.h"
#include "plexus/core/internal/cpu_relax.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"
#include "plexus/exec/task_processor.h"
#include "plexus/sync/cond_var.h"
#include "plexus/sync/mutex.h"
#include "registry.h"
#include "subscription_core.h"

namespace plexus {
namespace bus_internal {
namespace {

// The subscription whose callback the calling thread runs (innermost, for nested synchronous
// deliveries), so joins from inside a callback can be refused.
thread_local const SubscriptionCore* tls_current = nullptr;

class CurrentCallback {
 public:
  explicit CurrentCallback(const SubscriptionCore* core) noexcept
      : previous_(std::exchange(tls_current, core)) {}
  ~CurrentCallback() { tls_current = previous_; }
  CurrentCallback(const CurrentCallback&) = delete;
  CurrentCallback& operator=(const CurrentCallback&) = delete;

 private:
  const SubscriptionCore* previous_;
};

std::atomic<std::uint64_t> next_subscription_number{0};

// Joins and PublishAndWait are rare, so one process-wide lock and condition serve the waiters
// of every subscription (each rechecks its own condition): a subscription then carries no
// waiting machinery of its own (it matters at 100 000 subscriptions), and the consumer pays
// one relaxed load of `waiters_` per batch while nobody waits. The lock is a leaf: nothing is
// locked under it.
struct ProcessWaiters {
  sync_internal::AnnotatedMutex mu;
  CondVar cv;
};

ProcessWaiters& Waiters() {
  static auto* waiters = new ProcessWaiters();
  return *waiters;
}

// Called after the condition changed, when the subscription has waiters: taking the lock
// orders the change before a waiter's check, or the waiter is asleep and gets the notice.
void WakeWaiters() {
  ProcessWaiters& w = Waiters();
  { MutexLock lock(w.mu); }
  w.cv.NotifyAll();
}

template <class Condition>
void WaitFor(std::atomic<std::uint32_t>& waiters, Condition done) {
  waiters.fetch_add(1, std::memory_order_seq_cst);
  {
    ProcessWaiters& w = Waiters();
    MutexLock lock(w.mu);
    while (!done()) w.cv.Wait(w.mu);
  }
  waiters.fetch_sub(1, std::memory_order_relaxed);
}

// Messages a turn takes from the mailbox per lock acquisition.
constexpr std::uint32_t kTakeBatch = 64;
// Message references per mailbox segment (a segment is then 128 bytes).
constexpr std::uint32_t kSegmentSlots = 15;
// Spare segments a mailbox keeps for reuse; more are freed.
constexpr std::uint32_t kMaxSpares = 32;
// Polls of an empty mailbox before a turn ends (each a CPU pause: a few microseconds in all).
constexpr int kEndOfTurnSpins = 512;

}  // namespace

sync_internal::AnnotatedMutex SubscriptionCore::filter_mu_;

struct SubscriptionCore::Segment {
  Message* slots[kSegmentSlots];
  std::atomic<Segment*> next{nullptr};  // the queue's next segment, or the next spare
};

SubscriptionCore::SubscriptionCore(Ref<Topic> topic, MessageHandler handler,
                                   SubscriptionOptions&& options)
    : id_(topic->Name() + "-" +
          std::to_string(next_subscription_number.fetch_add(1, std::memory_order_relaxed) + 1)),
      topic_(std::move(topic)),
      mode_(options.mode),
      policy_(options.policy),
      capacity_(static_cast<std::uint32_t>(
          std::clamp<std::size_t>(options.capacity, 1, std::size_t{1} << 30))),
      batch_limit_(std::max<std::uint32_t>(options.batch_limit, 1)),
      high_water_(options.high_water),
      low_water_(std::min(options.low_water, options.high_water)),
      handler_(std::move(handler)),
      sync_mu_(options.mode == DeliveryMode::kSynchronous ? new RecursiveMutex(topic_->lock_class_)
                                                          : nullptr),
      listen_option_(options.subscription_changes) {
  if (mode_ == DeliveryMode::kPool) {
    own_pool_ = std::move(options.pool);
    pool_ = own_pool_ ? own_pool_.get() : &ThreadPool::Shared();
  } else if (mode_ == DeliveryMode::kDedicatedThread) {
    own_pool_ = ThreadPool::Create({.name = "bus/m:" + id_, .initial_size = 1, .min_size = 1});
    pool_ = own_pool_.get();
  }
  for (const MessageType* type : options.accepted_types) {
    if (type != nullptr) AcceptType(type);
  }
  if (Any(options.accepted_formats)) SetAcceptedFormats(options.accepted_formats);
  if (mode_ != DeliveryMode::kSynchronous) head_ = tail_ = new Segment();
  SubscriptionRegistry::Get().Add(this);
}

SubscriptionCore::~SubscriptionCore() {
  SubscriptionRegistry::Get().Remove(this);
  // Messages still queued (a subscription dropped without its final turn: only possible when
  // its pool was shut down under it) are released.
  for (std::uint64_t i = taken_.load(); i < enqueued_.load(); ++i) {
    PopHead()->DecRef(SourceLocation::current(), this);
  }
  for (Segment* s = head_; s != nullptr;) delete std::exchange(s, s->next.load());
  for (Segment* s = spares_.load(); s != nullptr;) delete std::exchange(s, s->next.load());
  if (alert_reported_.load(std::memory_order_relaxed)) {
    ReportQueueAlertChange("bus/" + id_, false, 0, high_water_);
  }
}

bool SubscriptionCore::InOwnCallback() const noexcept {
  return tls_current == this;
}

// -----------------------------------------------------------------------------
// Filter
// -----------------------------------------------------------------------------

bool SubscriptionCore::Passes(const Message& message) const noexcept {
  const bool selective = selective_.load(std::memory_order_relaxed);
  const std::uint32_t formats = formats_.load(std::memory_order_relaxed);
  if (!selective && formats == 0) return true;
  const MessageType& type = message.Type();
  if (selective) {
    const FilterWords* words = words_.load(std::memory_order_acquire);
    const std::uint32_t id = type.Id();
    if (words != nullptr && id / 64 < words->count &&
        (words->words[id / 64].load(std::memory_order_relaxed) >> (id % 64)) & 1) {
      return true;
    }
  }
  return (formats & static_cast<std::uint32_t>(type.AvailableFormats())) != 0;
}

void SubscriptionCore::AcceptType(const MessageType* type) {
  MutexLock lock(filter_mu_);
  const std::uint32_t id = type->Id();
  FilterWords* words = words_.load(std::memory_order_relaxed);
  if (words == nullptr || id / 64 >= words->count) {
    auto bigger = std::make_unique<FilterWords>(std::max<std::size_t>(id / 64 + 1, 2));
    if (words != nullptr) {
      for (std::size_t i = 0; i < words->count; ++i) {
        bigger->words[i].store(words->words[i].load(std::memory_order_relaxed),
                               std::memory_order_relaxed);
      }
    }
    words = bigger.get();
    filter_arrays_.push_back(std::move(bigger));
    words_.store(words, std::memory_order_release);
  }
  words->words[id / 64].fetch_or(std::uint64_t{1} << (id % 64), std::memory_order_relaxed);
  selective_.store(true, std::memory_order_release);
}

void SubscriptionCore::DeclineType(const MessageType* type) {
  MutexLock lock(filter_mu_);
  const std::uint32_t id = type->Id();
  FilterWords* words = words_.load(std::memory_order_relaxed);
  if (words != nullptr && id / 64 < words->count) {
    words->words[id / 64].fetch_and(~(std::uint64_t{1} << (id % 64)), std::memory_order_relaxed);
  }
}

void SubscriptionCore::AcceptAllTypes() {
  MutexLock lock(filter_mu_);
  selective_.store(false, std::memory_order_release);
  if (FilterWords* words = words_.load(std::memory_order_relaxed)) {
    for (std::size_t i = 0; i < words->count; ++i) {
      words->words[i].store(0, std::memory_order_relaxed);
    }
  }
}

void SubscriptionCore::SetAcceptedFormats(MessageFormats formats) {
  // Under the filter's lock, as the type filter's changes are, so that every change to the
  // filter is one total order (a message router relies on it to make racing changes commute).
  MutexLock lock(filter_mu_);
  formats_.store(static_cast<std::uint32_t>(formats), std::memory_order_release);
}

// -----------------------------------------------------------------------------
// Delivery
// -----------------------------------------------------------------------------

DeliverOutcome SubscriptionCore::Deliver(Message* message, WaitTicket* ticket,
                                         std::uint32_t& dropped, bool& alert_changed) {
  if (!Passes(*message)) {
    filtered_.fetch_add(1, std::memory_order_relaxed);
    return DeliverOutcome::kFiltered;
  }
  if (mode_ == DeliveryMode::kSynchronous) {
    MutexLock sync(*sync_mu_);
    // Closed: unsubscribed by a callback of this very fan-out, which still walks the snapshot
    // that held this subscription.
    if (!subscribed_.load(std::memory_order_relaxed)) return DeliverOutcome::kFiltered;
    queued_.fetch_add(1, std::memory_order_relaxed);
    Invoke(message);
    if (final_pending_ && !InOwnCallback()) {
      final_pending_ = false;
      Message* final_message = final_message_.load(std::memory_order_relaxed);
      Invoke(final_message);
      final_message->DecRef(SourceLocation::current(), this);
    }
    return DeliverOutcome::kDelivered;
  }

  Message* evicted = nullptr;
  bool schedule = false;
  {
    MutexLock lock(mu_);
    if (closed_) return DeliverOutcome::kFiltered;
    // A bounded queue holds capacity_ messages besides the one being handled (those a turn
    // took in its batch count as held).
    if (policy_ != QueuePolicy::kUnbounded && Depth() > capacity_) {
      if (policy_ == QueuePolicy::kRejectNew) {
        rejected_.store(rejected_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return DeliverOutcome::kRejected;
      }
      dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      ++dropped;
      const std::uint64_t taken = taken_.load(std::memory_order_relaxed);
      if (enqueued_.load(std::memory_order_relaxed) == taken) {
        // Every older message is being handled already: this one is the oldest that can go.
        return DeliverOutcome::kDropped;
      }
      // The consumer takes under mu_ too under a bounded policy: the head is ours here.
      evicted = PopHead();
      taken_.store(taken + 1, std::memory_order_relaxed);
    }
    message->AddRef(SourceLocation::current(), this);
    schedule = EnqueueLocked(message, alert_changed);
    if (ticket != nullptr && ticket->target == this) {
      ticket->seq = enqueued_.load(std::memory_order_relaxed);
    }
  }
  if (evicted != nullptr) evicted->DecRef(SourceLocation::current(), this);
  if (schedule) ScheduleTurn();
  return DeliverOutcome::kDelivered;
}

bool SubscriptionCore::EnqueueLocked(Message* message, bool& alert_changed) {
  if (tail_slot_ == kSegmentSlots) {
    Segment* next = spares_.load(std::memory_order_acquire);
    // Only producers (serialized by mu_) pop, so the popped segment cannot be popped, reused
    // and pushed again under us: no ABA.
    while (next != nullptr &&
           !spares_.compare_exchange_weak(next, next->next.load(std::memory_order_relaxed),
                                          std::memory_order_acquire, std::memory_order_acquire)) {
    }
    if (next != nullptr) {
      spare_count_.fetch_sub(1, std::memory_order_relaxed);
      next->next.store(nullptr, std::memory_order_relaxed);
    } else {
      next = new Segment();
    }
    tail_->next.store(next, std::memory_order_release);
    tail_ = next;
    tail_slot_ = 0;
  }
  tail_->slots[tail_slot_++] = message;
  const std::uint64_t enqueued = enqueued_.load(std::memory_order_relaxed) + 1;
  // Publishes the slot to the consumer; sequentially consistent, against the consumer's
  // end-of-turn check of scheduled_ (one of the two sees the other).
  enqueued_.store(enqueued, std::memory_order_seq_cst);
  queued_.store(queued_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Depth from a recent count of handled messages: an overestimate, refreshed (a read of the
  // consumer's counter) only when it would set a new highest depth or reach high water.
  const std::uint64_t gone = dropped_.load(std::memory_order_relaxed);
  std::uint64_t depth = enqueued - handled_seen_ - gone;
  if (depth > max_depth_.load(std::memory_order_relaxed) || depth >= high_water_) {
    handled_seen_ = handled_.load(std::memory_order_relaxed);
    depth = enqueued - std::min(enqueued, handled_seen_ + gone);
    if (depth > max_depth_.load(std::memory_order_relaxed)) {
      max_depth_.store(static_cast<std::uint32_t>(depth), std::memory_order_relaxed);
    }
    if (depth >= high_water_ && !alerted_) [[unlikely]] {
      alert_changed = CheckAlertLocked(depth);
    }
  }
  return !scheduled_.load(std::memory_order_seq_cst) &&
         !scheduled_.exchange(true, std::memory_order_acq_rel);
}

Message* SubscriptionCore::PopHead() {
  if (head_slot_ == kSegmentSlots) {
    Segment* next = head_->next.load(std::memory_order_acquire);
    RetireSegment(std::exchange(head_, next));
    head_slot_ = 0;
  }
  return head_->slots[head_slot_++];
}

void SubscriptionCore::RetireSegment(Segment* segment) {
  if (spare_count_.load(std::memory_order_relaxed) >= kMaxSpares) {
    delete segment;
    return;
  }
  spare_count_.fetch_add(1, std::memory_order_relaxed);
  Segment* top = spares_.load(std::memory_order_relaxed);
  do {
    segment->next.store(top, std::memory_order_relaxed);
  } while (!spares_.compare_exchange_weak(top, segment, std::memory_order_release,
                                          std::memory_order_relaxed));
}

std::uint32_t SubscriptionCore::Take(Message** batch) {
  std::unique_lock<MailboxMutex> lock;
  if (policy_ != QueuePolicy::kUnbounded) lock = std::unique_lock(mu_);
  const std::uint64_t taken = taken_.load(std::memory_order_relaxed);
  const std::uint64_t available = enqueued_.load(std::memory_order_acquire) - taken;
  const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(available, kTakeBatch));
  for (std::uint32_t i = 0; i < n; ++i) batch[i] = PopHead();
  if (n != 0) taken_.store(taken + n, std::memory_order_relaxed);
  return n;
}

std::uint64_t SubscriptionCore::Depth() const noexcept {
  const std::uint64_t enqueued = enqueued_.load(std::memory_order_acquire);
  const std::uint64_t gone =
      handled_.load(std::memory_order_relaxed) + dropped_.load(std::memory_order_relaxed);
  return enqueued > gone ? enqueued - gone : 0;
}

void SubscriptionCore::ScheduleTurn() {
  // The turn holds a reference, so the subscription outlives its last queued callback.
  AddRef(SourceLocation::current(), &pool_);
  if (!pool_->Push([this] { RunTurn(); })) {
    // The pool was shut down under the subscription: its messages can no longer run.
    Log(LogLevel::kError, "bus subscription '" + id_ + "': its pool refused a turn");
    scheduled_.store(false, std::memory_order_seq_cst);
    DecRef(SourceLocation::current(), &pool_);
  }
}

bool SubscriptionCore::CheckAlertLocked(std::size_t depth) {
  const bool now = alerted_ ? depth > low_water_ : depth >= high_water_;
  if (now == alerted_) return false;
  alerted_ = now;
  alert_depth_.store(static_cast<std::uint32_t>(std::min<std::size_t>(depth, UINT32_MAX)),
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
void SubscriptionCore::ReportAlertChanges() {
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
      ReportQueueAlertChange("bus/" + id_, now, alert_depth_.load(std::memory_order_relaxed),
                             high_water_);
    }
    alert_reporting_.store(false, std::memory_order_seq_cst);
  }
}

void SubscriptionCore::RunTurn() {
  Message* batch[kTakeBatch];
  std::uint32_t handled_this_turn = 0;
  bool spun = false;
  for (;;) {
    const std::uint32_t n = Take(batch);
    if (n == 0) {
      if (!spun) {
        // About to give the thread back: first wait a moment for more, unless other work waits
        // for the thread. A publisher that keeps publishing then never pays for a new turn
        // (a pool push and a wake); an idle subscription pays a few microseconds once.
        spun = true;
        const std::uint64_t taken = taken_.load(std::memory_order_relaxed);
        for (int i = 0; i < kEndOfTurnSpins && enqueued_.load(std::memory_order_relaxed) == taken &&
                        !pool_->HasQueuedWork();
             ++i) {
          core_internal::CpuRelax();
        }
        continue;
      }
      // End the turn, unless a message came in that saw the turn still scheduled.
      scheduled_.store(false, std::memory_order_seq_cst);
      if (enqueued_.load(std::memory_order_seq_cst) != taken_.load(std::memory_order_relaxed) &&
          !scheduled_.exchange(true, std::memory_order_acq_rel)) {
        spun = false;
        continue;
      }
      break;
    }
    spun = false;
    for (std::uint32_t i = 0; i < n; ++i) {
      Invoke(batch[i]);
      handled_.store(handled_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      batch[i]->DecRef(SourceLocation::current(), this);
    }
    // Every message up to the last taken left the queue (handled, or dropped meanwhile).
    const std::uint64_t done = taken_.load(std::memory_order_relaxed);
    done_upto_.store(done, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) != 0) WakeWaiters();
    if (alerted_flag_.load(std::memory_order_relaxed)) {
      bool alert_changed = false;
      {
        MutexLock lock(mu_);
        if (alerted_) alert_changed = CheckAlertLocked(Depth());
      }
      if (alert_changed) ReportAlertChanges();
    }
    handled_this_turn += n;
    if (handled_this_turn >= batch_limit_) {
      // Fairness, when other work waits for the thread: give it back and queue behind that
      // work; the reference held for this turn passes to the next.
      if (!pool_->HasQueuedWork()) {
        handled_this_turn = 0;
      } else if (pool_->Push([this] { RunTurn(); })) {
        return;
      }
    }
  }
  DecRef(SourceLocation::current(), &pool_);
}

void SubscriptionCore::Invoke(Message* message) {
  const bool is_final = message == final_message_.load(std::memory_order_relaxed);
  if (is_final) final_started_.store(true, std::memory_order_release);
  {
    CurrentCallback current(this);
    if (!core_internal::RunCatching([&] { handler_(*message, is_final); },
                                    [&] { return "bus subscription '" + id_ + "': callback"; },
                                    SourceLocation::current())) {
      failed_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  dispatched_.store(dispatched_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (is_final) {
    // Nothing runs after the final message: let what the callback captured go now.
    MessageHandler().swap(handler_);
    final_done_.store(true, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) != 0) WakeWaiters();
  }
}

// -----------------------------------------------------------------------------
// Lifecycle
// -----------------------------------------------------------------------------

bool SubscriptionCore::ListensToChanges() const noexcept {
  if (listen_option_) return true;
  if (!selective_.load(std::memory_order_acquire)) return false;
  const std::uint32_t id = SubscriptionChangeType()->Id();
  const FilterWords* words = words_.load(std::memory_order_acquire);
  return words != nullptr && id / 64 < words->count &&
         ((words->words[id / 64].load(std::memory_order_relaxed) >> (id % 64)) & 1) != 0;
}

void SubscriptionCore::Subscribe() {
  Ref<Message> notice = SubscriptionChangeType().Make(
      SubscriptionChange{topic_, id_, SubscriptionChangeKind::kSubscribe});
  const bool listens = ListensToChanges();
  bool alert_changed = false;
  {
    MutexLock lock(topic_->mu_);
    listening_ = listens;
    topic_->AddSubscriberLocked(this, listens);
    // Its own notice first: fan-outs are serialized by the topic's lock, so no message of a
    // publish that sees this subscription can come before it.
    std::uint32_t dropped = 0;
    Deliver(notice.get(), nullptr, dropped, alert_changed);
  }
  if (alert_changed) ReportAlertChanges();
  // The others hear of it only if they asked to (Asterisk tells every subscriber, which makes N
  // subscriptions in a row cost N(N+1)/2 deliveries).
  topic_->PublishImpl(notice.get(), nullptr, /*notice=*/true, /*exclude=*/this);
}

void SubscriptionCore::UpdateListening() {
  const bool listens = ListensToChanges();
  MutexLock lock(topic_->mu_);
  // Checked under the topic's lock, which Unsubscribe takes after clearing it: a subscription
  // that left is never listed again.
  if (listens == listening_ || !subscribed_.load(std::memory_order_acquire)) return;
  listening_ = listens;
  topic_->SetListenerLocked(this, listens);
}

bool SubscriptionCore::Unsubscribe() {
  if (!subscribed_.exchange(false, std::memory_order_acq_rel)) return false;
  {
    MutexLock lock(topic_->mu_);
    topic_->RemoveSubscriberLocked(this);
    listening_ = false;
  }
  Ref<Message> notice = SubscriptionChangeType().Make(
      SubscriptionChange{topic_, id_, SubscriptionChangeKind::kUnsubscribe});
  // The listeners hear of it; this subscription (no longer on the topic) gets it as its final.
  topic_->PublishImpl(notice.get(), nullptr, /*notice=*/true);
  DeliverFinal(notice.get());
  return true;
}

void SubscriptionCore::DeliverFinal(Message* message) {
  message->AddRef(SourceLocation::current(), this);
  final_message_.store(message, std::memory_order_relaxed);
  if (mode_ == DeliveryMode::kSynchronous) {
    MutexLock sync(*sync_mu_);
    if (InOwnCallback()) {
      // Unsubscribed from its own callback: the final message follows once it returns.
      final_pending_ = true;
      return;
    }
    Invoke(message);
    message->DecRef(SourceLocation::current(), this);
    return;
  }
  bool schedule = false;
  bool alert_changed = false;
  {
    MutexLock lock(mu_);
    closed_ = true;
    schedule = EnqueueLocked(message, alert_changed);
  }
  if (alert_changed) ReportAlertChanges();
  if (schedule) ScheduleTurn();
}

bool SubscriptionCore::Join(SourceLocation where) {
  if (InOwnCallback()) {
    ReportMisuse(
        "Subscription::Join from the subscription's own callback (it would wait for "
        "itself)",
        where);
    return false;
  }
  if (subscribed_.load(std::memory_order_acquire)) {
    ReportMisuse("Subscription::Join before Unsubscribe (it would never return)", where);
    return false;
  }
  if (mode_ == DeliveryMode::kSynchronous) {
    // The final callback ran inside Unsubscribe, or runs when the callback that unsubscribed
    // returns: the callback lock orders us after it.
    MutexLock sync(*sync_mu_);
    return true;
  }
  WaitFor(waiters_, [&] { return final_done_.load(std::memory_order_seq_cst); });
  // A dedicated thread has nothing left to run: stop it here (joining it), so it is not left to
  // end in the background when the last reference goes.
  if (mode_ == DeliveryMode::kDedicatedThread) own_pool_->Shutdown();
  return true;
}

void SubscriptionCore::WaitHandled(std::uint64_t seq) {
  WaitFor(waiters_, [&] { return done_upto_.load(std::memory_order_seq_cst) >= seq; });
}

SubscriptionStats SubscriptionCore::Stats() const {
  SubscriptionStats s;
  s.id = id_;
  s.topic = topic_->Name();
  s.mode = mode_;
  s.queued = queued_.load(std::memory_order_relaxed);
  s.filtered = filtered_.load(std::memory_order_relaxed);
  s.dispatched = dispatched_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  s.rejected = rejected_.load(std::memory_order_relaxed);
  s.max_depth = max_depth_.load(std::memory_order_relaxed);
  s.subscribed = subscribed_.load(std::memory_order_relaxed);
  s.depth = Depth();
  {
    MutexLock lock(mu_);
    s.alerted = alerted_;
    s.done = final_done_.load(std::memory_order_relaxed);
  }
  if (mode_ == DeliveryMode::kSynchronous) s.done = final_started_.load() && !s.subscribed;
  return s;
}

}  // namespace bus_internal

// -----------------------------------------------------------------------------
// Subscription (the handle)
// -----------------------------------------------------------------------------

Subscription Subscription::Create(const Ref<Topic>& topic, MessageHandler handler,
                                  SubscriptionOptions options, SourceLocation where) {
  if (topic == nullptr) {
    ReportMisuse("Subscribe: null topic", where);
    return {};
  }
  if (!handler) {
    ReportMisuse("Subscribe: empty callback", where);
    return {};
  }
  for (const MessageType* type : options.accepted_types) {
    if (type == nullptr) {
      ReportMisuse("Subscribe: null message type among accepted_types", where);
      return {};
    }
  }
  auto core = Ref<bus_internal::SubscriptionCore>::Adopt(
      new bus_internal::SubscriptionCore(topic, std::move(handler), std::move(options)), where);
  core->Subscribe();
  return Subscription(std::move(core));
}

Subscription::Subscription(Ref<bus_internal::SubscriptionCore> core) noexcept
    : core_(std::move(core)) {}

Subscription::Subscription() noexcept = default;

Subscription::Subscription(Subscription&& other) noexcept : core_(std::move(other.core_)) {}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    if (core_) core_->Unsubscribe();
    core_ = std::move(other.core_);
  }
  return *this;
}

Subscription::~Subscription() {
  if (core_) core_->Unsubscribe();
}

bool Subscription::Unsubscribe(SourceLocation) {
  return core_ && core_->Unsubscribe();
}

bool Subscription::Join(SourceLocation where) {
  if (!core_) {
    ReportMisuse("Subscription::Join on an empty handle", where);
    return false;
  }
  return core_->Join(where);
}

bool Subscription::UnsubscribeAndJoin(SourceLocation where) {
  if (!core_) {
    ReportMisuse("Subscription::UnsubscribeAndJoin on an empty handle", where);
    return false;
  }
  if (core_->InOwnCallback()) {
    ReportMisuse(
        "Subscription::UnsubscribeAndJoin from the subscription's own callback (it "
        "would wait for itself)",
        where);
    return false;
  }
  core_->Unsubscribe();
  return core_->Join(where);
}

bool Subscription::IsSubscribed() const noexcept {
  return core_ && core_->IsSubscribed();
}
bool Subscription::IsDone() const noexcept {
  return core_ && core_->IsDone();
}

const std::string& Subscription::Id() const noexcept {
  static const std::string kEmpty;
  return core_ ? core_->Id() : kEmpty;
}

Ref<Topic> Subscription::GetTopic() const {
  return core_ ? core_->GetTopic() : nullptr;
}

void Subscription::AcceptType(const MessageType* type, SourceLocation where) {
  if (type == nullptr) {
    ReportMisuse("Subscription::AcceptType: null type", where);
    return;
  }
  if (core_) {
    core_->AcceptType(type);
    core_->UpdateListening();
  }
}

void Subscription::DeclineType(const MessageType* type, SourceLocation where) {
  if (type == nullptr) {
    ReportMisuse("Subscription::DeclineType: null type", where);
    return;
  }
  if (core_) {
    core_->DeclineType(type);
    core_->UpdateListening();
  }
}

void Subscription::AcceptAllTypes() {
  if (core_) {
    core_->AcceptAllTypes();
    core_->UpdateListening();
  }
}

void Subscription::SetAcceptedFormats(MessageFormats formats) {
  if (core_) core_->SetAcceptedFormats(formats);
}

SubscriptionStats Subscription::Stats() const {
  return core_ ? core_->Stats() : SubscriptionStats{};
}

// -----------------------------------------------------------------------------
// Subscription-change messages
// -----------------------------------------------------------------------------

const TypedMessageType<SubscriptionChange>& SubscriptionChangeType() {
  static const TypedMessageType<SubscriptionChange> type = [] {
    // Final messages are subscription changes: this type must never be declined, whatever the
    // decline list says (Asterisk's joins hang when it is).
    return TypedMessageType<SubscriptionChange>::Adopt(MessageTypeRegistry::Get().Add(
        "SubscriptionChange", &typeid(SubscriptionChange), {}, /*declinable=*/false));
  }();
  return type;
}

bool IsFinalMessage(const Message& message, std::string_view subscription_id) noexcept {
  const SubscriptionChange* change = SubscriptionChangeType().Get(message);
  return change != nullptr && change->kind == SubscriptionChangeKind::kUnsubscribe &&
         change->subscription_id == subscription_id;
}

}  // namespace plexus
