#include "plexus/bus/subscription.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string>

#include "message_type_registry.h"
#include "plexus/core/internal/cpu_relax.h"
#include "plexus/core/internal/prefetch.h"
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

// Polls of an empty mailbox before a turn ends (each a CPU pause: a few microseconds in all).
constexpr int kEndOfTurnSpins = 512;

}  // namespace

sync_internal::AnnotatedMutex SubscriptionCore::filter_mu_;

// 100 000 idle subscriptions are a design point: subscription_core.h, Layout.
static_assert(sizeof(SubscriptionCore) <= 6 * kCacheLineSize,
              "read-mostly fields: 3 cache lines; mailbox: 2; the turn's: 1");

SubscriptionCore::SubscriptionCore(Ref<Topic> topic, MessageHandler handler,
                                   SubscriptionOptions&& options)
    : id_(topic->Name() + "-" +
          std::to_string(next_subscription_number.fetch_add(1, std::memory_order_relaxed) + 1)),
      handler_(std::move(handler)),
      batch_limit_(std::max<std::uint32_t>(options.batch_limit, 1)),
      topic_(std::move(topic)),
      mode_(options.mode),
      sync_mu_(options.mode == DeliveryMode::kSynchronous ? new RecursiveMutex(topic_->lock_class_)
                                                          : nullptr),
      listen_option_(options.subscription_changes),
      mailbox_(options.policy,
               static_cast<std::uint32_t>(
                   std::clamp<std::size_t>(options.capacity, 1, std::size_t{1} << 30)),
               options.high_water, options.low_water) {
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
  SubscriptionRegistry::Get().Add(this);
}

SubscriptionCore::~SubscriptionCore() {
  SubscriptionRegistry::Get().Remove(this);
  delete words_.load(std::memory_order_relaxed);
  mailbox_.ReportFinalClear(id_);
}

bool SubscriptionCore::InOwnCallback() const noexcept {
  return tls_current == this;
}

// -----------------------------------------------------------------------------
// Filter
// -----------------------------------------------------------------------------

bool SubscriptionCore::PassesFilter(const Message& message) const noexcept {
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
    auto* bigger =
        new FilterWords(std::max<std::size_t>(id / 64 + 1, 2), std::unique_ptr<FilterWords>(words));
    if (words != nullptr) {
      for (std::size_t i = 0; i < words->count; ++i) {
        bigger->words[i].store(words->words[i].load(std::memory_order_relaxed),
                               std::memory_order_relaxed);
      }
    }
    words = bigger;
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

DeliverOutcome SubscriptionCore::Deliver(Message* message, WaitTicket* ticket, MessageRefs& refs,
                                         std::uint32_t remaining, std::uint32_t& dropped,
                                         bool& alert_changed) {
  if (!Passes(*message)) {
    filtered_.fetch_add(1, std::memory_order_relaxed);
    return DeliverOutcome::kFiltered;
  }
  if (mode_ == DeliveryMode::kSynchronous) {
    MutexLock sync(*sync_mu_);
    // Closed: unsubscribed by a callback of this very fan-out, which still walks the snapshot
    // that held this subscription.
    if (!subscribed_.load(std::memory_order_relaxed)) return DeliverOutcome::kFiltered;
    sync_queued_.fetch_add(1, std::memory_order_relaxed);
    Invoke(message);
    if (final_pending_ && !InOwnCallback()) {
      final_pending_ = false;
      Message* final_message = final_message_.load(std::memory_order_relaxed);
      Invoke(final_message);
      final_message->DecRef(SourceLocation::current(), this);
    }
    return DeliverOutcome::kDelivered;
  }

  std::uint64_t* seq = ticket != nullptr && ticket->target == this ? &ticket->seq : nullptr;
  refs.Take(remaining, &mailbox_);
  Mailbox::PushResult pushed;
  try {
    pushed = mailbox_.Push(message, seq, dropped, alert_changed);
  } catch (...) {
    // A segment could not be allocated: the message was not queued.
    refs.GiveBack(&mailbox_);
    throw;
  }
  if (pushed.outcome != Mailbox::Outcome::kQueued) [[unlikely]] {
    refs.GiveBack(&mailbox_);
    if (pushed.outcome == Mailbox::Outcome::kRejected) return DeliverOutcome::kRejected;
    if (pushed.outcome == Mailbox::Outcome::kDropped) return DeliverOutcome::kDropped;
    return DeliverOutcome::kFiltered;  // kClosed
  }
  if (pushed.schedule) ScheduleTurn();
  return DeliverOutcome::kDelivered;
}

void SubscriptionCore::ScheduleTurn() {
  // The turn holds a reference, so the subscription outlives its last queued callback.
  AddRef(SourceLocation::current(), &pool_);
  // Made ready by a task of its own pool (a callback or task that publishes), the turn runs
  // next on that task's worker: no wake-up, the message still warm in its cache. From any
  // other thread this is Push.
  if (!pool_->PushRunNext([this] { RunTurn(); })) {
    // The pool was shut down under the subscription: its messages can no longer run.
    Log(LogLevel::kError, "bus subscription '" + id_ + "': its pool refused a turn");
    mailbox_.CancelTurn();
    DecRef(SourceLocation::current(), &pool_);
  }
}

void SubscriptionCore::RunTurn() {
  Message* batch[Mailbox::kTakeBatch];
  std::uint32_t handled_this_turn = 0;
  bool spun = false;
  for (;;) {
    const std::uint32_t n = mailbox_.Take(batch);
    if (n == 0) {
      if (!spun) {
        // About to give the thread back: first wait a moment for more, unless other work waits
        // for the thread. A publisher that keeps publishing then never pays for a new turn
        // (a pool push and a wake); an idle subscription pays a few microseconds once.
        spun = true;
        for (int i = 0; i < kEndOfTurnSpins && mailbox_.LooksEmpty() && !pool_->HasQueuedWork();
             ++i) {
          core_internal::CpuRelax();
        }
        continue;
      }
      // End the turn, unless a message came in that saw the turn still scheduled.
      if (!mailbox_.EndTurn()) {
        spun = false;
        continue;
      }
      break;
    }
    spun = false;
    for (std::uint32_t i = 0; i < n; ++i) {
      // The next message was made on the publisher's core: fetch its line (for writing: the
      // turn drops its reference) while this one's callback runs.
      if (i + 1 < n) core_internal::PrefetchForWrite(batch[i + 1]);
      Invoke(batch[i]);
      mailbox_.NoteHandled();
      batch[i]->DecRef(SourceLocation::current(), &mailbox_);
    }
    // Every message up to the last taken left the queue (handled, or dropped meanwhile).
    mailbox_.NoteBatchDone();
    if (waiters_.load(std::memory_order_seq_cst) != 0) WakeWaiters();
    if (mailbox_.RecheckAlert()) ReportAlertChanges();
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
    MessageRefs refs(notice.get(), /*owned=*/false);
    refs.BeginFanOut(/*last=*/true);
    Deliver(notice.get(), nullptr, refs, 1, dropped, alert_changed);
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
  final_message_.store(message, std::memory_order_relaxed);
  if (mode_ == DeliveryMode::kSynchronous) {
    message->AddRef(SourceLocation::current(), this);
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
  bool alert_changed = false;
  const Mailbox::PushResult pushed = mailbox_.PushFinal(message, alert_changed);
  if (alert_changed) ReportAlertChanges();
  if (pushed.schedule) ScheduleTurn();
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
  WaitFor(waiters_, [&] { return mailbox_.DoneUpto() >= seq; });
}

SubscriptionStats SubscriptionCore::Stats() const {
  SubscriptionStats s;
  s.id = id_;
  s.topic = topic_->Name();
  s.mode = mode_;
  s.queued = mode_ == DeliveryMode::kSynchronous ? sync_queued_.load(std::memory_order_relaxed)
                                                 : mailbox_.Queued();
  s.filtered = filtered_.load(std::memory_order_relaxed);
  s.dispatched = dispatched_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.dropped = mailbox_.Dropped();
  s.rejected = mailbox_.Rejected();
  s.max_depth = mailbox_.MaxDepth();
  s.subscribed = subscribed_.load(std::memory_order_relaxed);
  s.depth = mailbox_.Depth();
  s.alerted = mailbox_.Alerted();
  s.high_water = mailbox_.HighWater();
  s.low_water = mailbox_.LowWater();
  s.done = final_done_.load(std::memory_order_relaxed);
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
