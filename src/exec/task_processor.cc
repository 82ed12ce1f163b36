// TaskProcessor: a serializer on a ThreadPool.
//
// Producers append to `incoming_` under the task processor's mutex. While the task processor
// has work, exactly one "turn" is queued on or running in the pool (kScheduled); a turn
// swaps `incoming_` with the empty `draining_` array (O(1), both keep their capacity, so the
// steady state allocates nothing), runs up to `batch_limit_` tasks from it without any lock,
// and either queues itself again behind other pool work (fairness) or, finding nothing left,
// ends (kScheduled cleared). The empty -> non-empty transition of an idle task processor is
// the only push that touches the pool; that push puts its task straight into `draining_`
// (owned by no turn while none is scheduled), so the turn it queues starts without the lock;
// and a turn that no push reached since it last looked at `incoming_` ends with one
// compare-and-swap on the lock's word, without the lock (exec_internal::TurnWord): a hand-off
// between idle serializers costs one lock pair for the push and one compare-and-swap for the
// turn's end, and a turn reads the clock only when it is one of those sampled for the busy
// time.
//
// Waiting for a turn to end (Shutdown, the last reference) uses one process-wide condition
// and a generation count that every turn end with waiters advances: turns end often, but
// waiters are rare, and a condition variable per task processor would grow its idle size.
//
// Alert changes are recorded under the alert lock and delivered (logged, handed to the
// handler) after it was let go, one thread at a time, so user code never runs under it.

#include "plexus/exec/task_processor.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <unordered_map>

#include "plexus/core/clock.h"
#include "plexus/core/config.h"
#include "plexus/core/internal/cpu_relax.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/core/thread_id.h"
#include "plexus/sync/cond_var.h"
#include "plexus/sync/mutex.h"

namespace plexus {

namespace {

using exec_internal::TurnWord;

thread_local TaskProcessor* tls_current = nullptr;

// plexus::MutexLock for a TurnWord, whose unlock may also set and clear the word's flags.
class PLEXUS_SCOPED_CAPABILITY TurnLock {
 public:
  explicit TurnLock(TurnWord& mu) PLEXUS_ACQUIRE(mu) : mu_(mu) { mu_.Acquire(); }
  ~TurnLock() PLEXUS_RELEASE() { mu_.ReleaseWith(set, clear); }
  TurnLock(const TurnLock&) = delete;
  TurnLock& operator=(const TurnLock&) = delete;

  std::uint32_t set = 0;
  std::uint32_t clear = 0;

 private:
  TurnWord& mu_;
};

// Polls of an empty queue before a turn ends (each a CPU pause: a few microseconds in all).
constexpr int kEndOfTurnPolls = 512;

// Where waiters for the end of a turn (of any task processor) sleep. A waiter reads
// `generation` while it still holds its task processor's lock, and a turn end with waiters
// advances it under that same lock, so no end is missed between the two.
struct TurnEnds {
  // Taken under a task processor's mu_ and nothing under it.
  sync_internal::AnnotatedMutex mu;
  CondVar cv;
  std::uint64_t generation PLEXUS_GUARDED_BY(mu) = 0;
};
TurnEnds& TurnEnded() {
  static auto* ends = new TurnEnds();
  return *ends;
}

// One change of a queue's alert state, waiting to be logged and handed to the handler.
struct AlertChange {
  std::string name;
  bool raised;
  std::size_t depth;
  std::size_t high_water;
  std::size_t subsystem_alerts;
  std::size_t process_alerts;
};

// Process-wide alert state. Alert changes are rare (a level crossing), so one lock is fine.
struct AlertState {
  Mutex mu;
  CondVar handler_returned;
  TaskProcessorAlertHandler handler PLEXUS_GUARDED_BY(mu);
  std::map<std::string, std::size_t, std::less<>> by_subsystem PLEXUS_GUARDED_BY(mu);
  std::size_t process PLEXUS_GUARDED_BY(mu) = 0;
  // Changes recorded but not yet delivered, oldest first.
  std::deque<AlertChange> pending PLEXUS_GUARDED_BY(mu);
  // The thread delivering `pending` (0: none), and whether it is inside the handler now.
  ThreadToken deliverer PLEXUS_GUARDED_BY(mu) = 0;
  bool in_handler PLEXUS_GUARDED_BY(mu) = false;
};
AlertState& Alerts() {
  static auto* state = new AlertState();
  return *state;
}

std::string_view SubsystemOf(std::string_view name) {
  const std::size_t slash = name.find('/');
  return slash == std::string_view::npos ? std::string_view() : name.substr(0, slash);
}

// Records an alert change: updates the counts and queues it for delivery.
void RecordQueueAlertChangeLocked(AlertState& alerts, std::string_view name, bool raised,
                                  std::size_t depth, std::size_t high_water)
    PLEXUS_REQUIRES(alerts.mu) {
  const std::string_view subsystem = SubsystemOf(name);
  std::size_t subsystem_count = 0;
  if (!subsystem.empty()) {
    auto it = alerts.by_subsystem.find(subsystem);
    if (raised) {
      if (it == alerts.by_subsystem.end()) it = alerts.by_subsystem.emplace(subsystem, 0).first;
      subsystem_count = ++it->second;
    } else if (it != alerts.by_subsystem.end()) {
      subsystem_count = --it->second;
      if (subsystem_count == 0) alerts.by_subsystem.erase(it);
    }
  }
  alerts.process = raised ? alerts.process + 1 : alerts.process - 1;
  alerts.pending.push_back(
      AlertChange{std::string(name), raised, depth, high_water, subsystem_count, alerts.process});
}

// Logs and hands to the handler every recorded change, unless a thread (this one, from inside
// the handler, or another) is at it already: that thread then delivers them after its own.
void DeliverAlertChanges(AlertState& alerts) PLEXUS_EXCLUDES(alerts.mu) {
  alerts.mu.Acquire();
  if (alerts.deliverer != 0) {
    alerts.mu.Release();
    return;
  }
  alerts.deliverer = CurrentThreadToken();
  while (!alerts.pending.empty()) {
    const AlertChange change = std::move(alerts.pending.front());
    alerts.pending.pop_front();
    // A copy: the handler may be replaced (by itself, too) while it runs.
    const TaskProcessorAlertHandler handler = alerts.handler;
    alerts.in_handler = true;
    alerts.mu.Release();
    if (change.raised) {
      Log(LogLevel::kWarning,
          "queue '" + change.name + "' reached " + std::to_string(change.depth) +
              " waiting items (high water mark: " + std::to_string(change.high_water) + ")");
    }
    if (handler) {
      const TaskProcessorAlert alert{change.name,  SubsystemOf(change.name), change.raised,
                                     change.depth, change.subsystem_alerts,  change.process_alerts};
      core_internal::RunCatching([&] { handler(alert); },
                                 [] { return std::string("the task processor alert handler"); },
                                 SourceLocation::current());
    }
    alerts.mu.Acquire();
    alerts.in_handler = false;
    alerts.handler_returned.NotifyAll();
  }
  alerts.deliverer = 0;
  alerts.mu.Release();
}

}  // namespace

// The registry of live task processors: all of them in an intrusive list (for List), the
// named ones also by name (for Find and uniqueness).
class TaskProcessorRegistry {
 public:
  static TaskProcessorRegistry& Get() {
    static auto* registry = new TaskProcessorRegistry();
    return *registry;
  }

  // Reached as TaskProcessor::RegistryMutex(), the name the annotations use.
  Mutex mu;
  TaskProcessor* head PLEXUS_GUARDED_BY(TaskProcessor::RegistryMutex()) = nullptr;
  std::size_t live PLEXUS_GUARDED_BY(TaskProcessor::RegistryMutex()) = 0;
  std::unordered_map<std::string_view, TaskProcessor*> by_name
      PLEXUS_GUARDED_BY(TaskProcessor::RegistryMutex());
  std::uint32_t next_serial PLEXUS_GUARDED_BY(TaskProcessor::RegistryMutex()) = 1;

  void LinkLocked(TaskProcessor* tp) PLEXUS_REQUIRES(TaskProcessor::RegistryMutex()) {
    tp->next_live_ = head;
    if (head != nullptr) head->prev_ = tp;
    head = tp;
    ++live;
    if (!tp->name_.empty()) by_name.emplace(tp->name_, tp);
  }

  void UnlinkLocked(TaskProcessor* tp) PLEXUS_REQUIRES(TaskProcessor::RegistryMutex()) {
    if (tp->prev_ != nullptr) tp->prev_->next_live_ = tp->next_live_;
    if (tp->next_live_ != nullptr) tp->next_live_->prev_ = tp->prev_;
    if (head == tp) head = tp->next_live_;
    --live;
    if (!tp->name_.empty()) by_name.erase(tp->name_);
  }
};

Mutex& TaskProcessor::RegistryMutex() {
  return TaskProcessorRegistry::Get().mu;
}

// 100 000 idle task processors are a design point: with its allocation header, an idle one
// fits in 256 bytes (task_processor.h, the member order).
static_assert(sizeof(TaskProcessor) <= 256 - 8, "an idle task processor fits in 256 bytes");

// -----------------------------------------------------------------------------
// Creation and destruction
// -----------------------------------------------------------------------------

TaskProcessor::TaskProcessor(TaskProcessorOptions&& options, Ref<ThreadPool> pool)
    : high_water_(options.high_water),
      serial_(TaskProcessorRegistry::Get().next_serial++),  // registry lock held by Create
      low_water_(options.low_water),
      name_(std::move(options.name)),
      pool_(std::move(pool)),
      discard_on_release_(options.discard_on_release),
      batch_limit_(std::max<std::uint32_t>(1, options.batch_limit)) {
  // The layout the header describes. offsetof on a class with virtual functions (not
  // standard-layout) is conditionally supported; GCC and clang support it without virtual bases.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
  constexpr std::size_t kProducersEnd = offsetof(TaskProcessor, incoming_) + sizeof(incoming_);
  constexpr std::size_t kTurnStart = offsetof(TaskProcessor, batch_limit_);
  static_assert(offsetof(TaskProcessor, mu_) < kProducersEnd &&
                    offsetof(TaskProcessor, pushed_) < kProducersEnd &&
                    offsetof(TaskProcessor, taken_seen_) < kProducersEnd &&
                    offsetof(TaskProcessor, high_water_) < kProducersEnd,
                "the producers' members come first");
  static_assert(kTurnStart >= kProducersEnd + kCacheLineSize,
                "no cache line holds both a producer's and the running turn's member");
  static_assert(offsetof(TaskProcessor, next_) >= kTurnStart &&
                    offsetof(TaskProcessor, executing_) >= kTurnStart &&
                    offsetof(TaskProcessor, taken_) >= kTurnStart &&
                    offsetof(TaskProcessor, processed_) >= kTurnStart &&
                    offsetof(TaskProcessor, draining_) >= kTurnStart,
                "the running turn's members come last");
  static_assert(offsetof(TaskProcessor, alerted_) / 16 ==
                    (offsetof(TaskProcessor, taken_) + sizeof(taken_) - 1) / 16,
                "a push that reads taken_ and alerted_ reads one cache line");
#pragma GCC diagnostic pop
}

Ref<TaskProcessor> TaskProcessor::Create(TaskProcessorOptions options, SourceLocation where) {
  if (options.high_water < options.low_water) {
    ReportMisuse("TaskProcessor::Create: high_water below low_water", where);
    return nullptr;
  }
  Ref<ThreadPool> pool;
  if (options.dedicated_thread) {
    pool = ThreadPool::Create(
        {.name = options.name.empty() ? std::string("tps-dedicated") : options.name,
         .initial_size = 1,
         .min_size = 1,
         .max_size = 1},
        where);
  } else if (options.pool) {
    pool = std::move(options.pool);
  } else {
    pool = Ref<ThreadPool>(&ThreadPool::Shared(), where);
  }
  TaskProcessorRegistry& registry = TaskProcessorRegistry::Get();
  TaskProcessor* created = nullptr;
  {
    MutexLock lock(RegistryMutex());
    if (options.name.empty() || !registry.by_name.contains(options.name)) {
      created = new TaskProcessor(std::move(options), std::move(pool));
      registry.LinkLocked(created);
    }
  }
  if (created == nullptr) {
    ReportMisuse("TaskProcessor::Create: the name '" + options.name + "' is already in use", where);
    return nullptr;
  }
  return Ref<TaskProcessor>::Adopt(created, where);
}

TaskProcessor::~TaskProcessor() {
  {
    TaskProcessorRegistry& registry = TaskProcessorRegistry::Get();
    MutexLock lock(RegistryMutex());
    registry.UnlinkLocked(this);
  }
  if (alerted_.load(std::memory_order_relaxed)) {
    // Leaving while alerted: take this task processor out of the alert counts.
    taken_.store(pushed_.load(std::memory_order_relaxed), std::memory_order_release);
    low_water_.store(0, std::memory_order_relaxed);
    CheckAlert();
  }
}

void TaskProcessor::LastReferenceDropped() const {
  auto* self = const_cast<TaskProcessor*>(this);
  const ShutdownMode mode = discard_on_release_ ? ShutdownMode::kDiscard : ShutdownMode::kDrain;
  if (tls_current == self) {
    // From one of its own tasks: the turn running us finishes the shutdown and frees it.
    (void)self->Shutdown(mode);
    MutexLock lock(self->mu_);
    self->free_after_turn_ = true;
    self->mu_.Change(TurnWord::kSlowEnd, 0);
    return;
  }
  (void)self->Shutdown(mode);
  delete self;
}

Ref<TaskProcessor> TaskProcessor::Find(std::string_view name) {
  TaskProcessorRegistry& registry = TaskProcessorRegistry::Get();
  MutexLock lock(RegistryMutex());
  auto it = registry.by_name.find(name);
  if (it == registry.by_name.end() || !it->second->TryAddRef()) return nullptr;
  return Ref<TaskProcessor>::Adopt(it->second);
}

TaskProcessor* TaskProcessor::Current() noexcept {
  return tls_current;
}

std::size_t TaskProcessor::LiveCount() {
  TaskProcessorRegistry& registry = TaskProcessorRegistry::Get();
  MutexLock lock(RegistryMutex());
  return registry.live;
}

std::vector<TaskProcessorStats> TaskProcessor::List() {
  std::vector<Ref<TaskProcessor>> alive;
  {
    TaskProcessorRegistry& registry = TaskProcessorRegistry::Get();
    MutexLock lock(RegistryMutex());
    alive.reserve(registry.live);
    for (TaskProcessor* tp = registry.head; tp != nullptr; tp = tp->next_live_) {
      if (tp->TryAddRef()) alive.push_back(Ref<TaskProcessor>::Adopt(tp));
    }
  }
  std::vector<TaskProcessorStats> out;
  out.reserve(alive.size());
  for (const Ref<TaskProcessor>& tp : alive) out.push_back(tp->Stats());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string TaskProcessor::ListText() {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-40s %12s %8s %10s %8s %6s %9s\n", "name", "processed",
                "depth", "max depth", "failed", "alert", "executing");
  out += line;
  for (const TaskProcessorStats& s : List()) {
    std::snprintf(line, sizeof line, "%-40s %12llu %8zu %10zu %8llu %6s %9s\n", s.name.c_str(),
                  static_cast<unsigned long long>(s.processed), s.depth, s.max_depth,
                  static_cast<unsigned long long>(s.failed), s.alerted ? "yes" : "no",
                  s.executing ? "yes" : "no");
    out += line;
  }
  return out;
}

// -----------------------------------------------------------------------------
// Pushing
// -----------------------------------------------------------------------------

bool TaskProcessor::Push(Task task, SourceLocation where) {
  if (!task) {
    ReportMisuse("TaskProcessor::Push of an empty task", where);
    return false;
  }
  if (TryPush(task)) return true;
  ReportMisuse("TaskProcessor::Push to '" + Name() + "', which was shut down", where);
  return false;
}

bool TaskProcessor::TryPush(Task& task) {
  if (!task) return false;
  bool schedule = false;
  bool check_alert = false;
  {
    // A push that queued its task says how the flags change, in the unlock's own
    // read-modify-write; one that returns early or throws changes none.
    TurnLock unlock(mu_);
    if (shut_down_) return false;
    const std::uint64_t pushed = pushed_.load(std::memory_order_relaxed) + 1;
    // An upper bound of the depth, from the producers' copy of taken_. Reading taken_ moves
    // the running turn's cache line here, so it is read again only when the bound is at a
    // level that matters: below both, so is the true depth, and neither the maximum nor the
    // alert can change.
    std::uint64_t depth = pushed - taken_seen_;
    const std::uint32_t high_water = high_water_.load(std::memory_order_relaxed);
    if (PLEXUS_UNLIKELY(depth > max_depth_ || depth >= high_water)) {
      // No push can change pushed_ now, and taken_ never passes it: exact as of this read.
      taken_seen_ = taken_.load(std::memory_order_relaxed);
      depth = pushed - taken_seen_;
      if (depth > max_depth_) max_depth_ = static_cast<std::uint32_t>(depth);
      check_alert = depth >= high_water && !alerted_.load(std::memory_order_relaxed);
    }
    schedule = !ScheduledLocked() && suspended_.load(std::memory_order_relaxed) == 0;
    if (schedule && incoming_.empty() && next_ == draining_.size()) {
      // No turn owns draining_ (none is scheduled) and nothing older waits: hand the task
      // straight to the turn about to be queued, which then starts without taking mu_, and
      // whose end then finds no push (kPushed clear) and needs no lock either.
      draining_.clear();
      next_ = 0;
      draining_.push_back(std::move(task));
      unlock.clear = TurnWord::kPushed;
    } else {
      incoming_.push_back(std::move(task));
      unlock.set = TurnWord::kPushed;
    }
    // Counted once the task is queued: an allocation that throws above counts nothing.
    pushed_.store(pushed, std::memory_order_relaxed);
    if (schedule) unlock.set |= TurnWord::kScheduled;
  }
  if (PLEXUS_UNLIKELY(check_alert)) CheckAlert();
  if (schedule) ScheduleTurn();
  return true;
}

void TaskProcessor::ScheduleTurn(bool yielding) {
  // A turn made ready by a task of the pool runs next on that task's thread (no wake-up, warm
  // caches); a turn that yields for fairness queues behind the pool's other work.
  const bool pushed =
      yielding ? pool_->Push([this] { RunTurn(); }) : pool_->PushRunNext([this] { RunTurn(); });
  if (pushed) return;
  // Only a pool shut down under a live task processor gets here (Push reported it).
  mu_.Acquire();
  EndTurnLocked();
  mu_.ReleaseWith(0, TurnWord::kScheduled);
}

bool TaskProcessor::PushAndWait(Task task, SourceLocation where) {
  if (!task) {
    ReportMisuse("TaskProcessor::PushAndWait of an empty task", where);
    return false;
  }
  if (tls_current == this) {
    // From our own task: queueing it would wait for ourselves. Run it now.
    processed_.store(processed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (!core_internal::RunCatching(
            task, [&] { return "task processor '" + Name() + "': a task"; }, where)) {
      failed_.fetch_add(1, std::memory_order_relaxed);
    }
    return true;
  }
  struct Waiter {
    sync_internal::AnnotatedMutex mu;
    CondVar cv;
    bool done PLEXUS_GUARDED_BY(mu) = false;
    // Written by the task before `done` is set under mu, read by the waiter after it.
    bool ran = false;
  } waiter;
  // Signals the waiter when the wrapped task is destroyed: after it ran, or unrun when a
  // shutdown discards it, so the waiter never hangs.
  struct Signal {
    Waiter* waiter;
    explicit Signal(Waiter* w) : waiter(w) {}
    Signal(Signal&& other) noexcept : waiter(std::exchange(other.waiter, nullptr)) {}
    Signal& operator=(Signal&&) = delete;
    ~Signal() {
      if (waiter == nullptr) return;
      MutexLock lock(waiter->mu);
      waiter->done = true;
      waiter->cv.NotifyOne();
    }
  };
  const bool pushed = Push(
      [inner = std::move(task), signal = Signal(&waiter)]() mutable {
        signal.waiter->ran = true;
        inner();
      },
      where);
  // From a pool worker, the task may need a thread of the very pool this one blocks.
  ThreadPool::ScopedBlockingWait blocking;
  MutexLock lock(waiter.mu);
  while (!waiter.done) waiter.cv.Wait(waiter.mu);
  return pushed && waiter.ran;
}

// -----------------------------------------------------------------------------
// The turn
// -----------------------------------------------------------------------------

void TaskProcessor::EndTurnLocked() {
  executing_.store(false, std::memory_order_relaxed);
  if (turn_waiters_ > 0) {
    TurnEnds& ends = TurnEnded();
    MutexLock lock(ends.mu);
    ++ends.generation;
    ends.cv.NotifyAll();
  }
}

TaskProcessor::BusyClock TaskProcessor::StartBusyClock() noexcept {
  // One turn in kBusySampleTurns per thread is timed and counted that many times (and every
  // task processor's first turn once, so that one that ran at all shows some busy time): a
  // hand-off's turn is a few hundred instructions, and two clock reads were a tenth of it.
  thread_local std::uint32_t turns = 0;
  if ((++turns & static_cast<std::uint32_t>(kBusySampleTurns - 1)) == 0)
    return {MonotonicNanos(), kBusySampleTurns};
  if (processed_.load(std::memory_order_relaxed) == 0) return {MonotonicNanos(), 1};
  return {0, 0};
}

void TaskProcessor::StopBusyClock(BusyClock clock) noexcept {
  if (clock.weight == 0) return;
  const std::int64_t busy = (MonotonicNanos() - clock.started) * clock.weight;
  // One writer at a time (turns never overlap): a plain store, not a read-modify-write.
  busy_ns_.store(busy_ns_.load(std::memory_order_relaxed) + busy, std::memory_order_relaxed);
}

void TaskProcessor::RunTurn() {
  TaskProcessor* const outer = tls_current;
  tls_current = this;
  BusyClock started = StartBusyClock();
  std::uint32_t budget = batch_limit_;
  for (;;) {
    if (next_ == draining_.size()) {
      draining_.clear();
      next_ = 0;
      // About to give the thread back: a turn that ran several tasks (a producer is streaming)
      // or whose last wait paid off first waits a moment for more, unless other work waits for
      // the thread. A producer that keeps pushing then never pays for a new turn (a push to
      // the pool and a wake-up); a task processor fed one task at a time does not wait.
      if (pushed_.load(std::memory_order_relaxed) == taken_.load(std::memory_order_relaxed) &&
          (budget + 1 < batch_limit_ || poll_paid_)) {
        poll_paid_ = PollForPushes();
      }
      if (mu_.MayEndTurn()) {
        // No push since the turn last looked at incoming_, and nobody waits for the end: end
        // with one compare-and-swap, without the lock. Everything the turn writes comes
        // before it: a push may queue the next turn, on another thread, right after.
        StopBusyClock(started);
        executing_.store(false, std::memory_order_relaxed);
        if (mu_.TryEndTurn()) {
          tls_current = outer;
          return;
        }
        // A push came between the look and the swap: go on, timing the rest of the turn.
        if (started.weight != 0) started.started = MonotonicNanos();
      }
      mu_.Acquire();
      if (incoming_.empty() || suspended_.load(std::memory_order_relaxed) > 0) break;
      incoming_.swap(draining_);
      mu_.ReleaseWith(0, TurnWord::kPushed);
    }
    if (PLEXUS_UNLIKELY(suspended_.load(std::memory_order_acquire) > 0)) {
      mu_.Acquire();
      // draining_ keeps the rest; the turn after Resume continues it.
      if (suspended_.load(std::memory_order_relaxed) > 0) break;
      mu_.Release();
    }
    if (budget == 0) {
      // Fairness: let the pool's other work run, and come back behind it.
      StopBusyClock(started);
      tls_current = outer;
      ScheduleTurn(/*yielding=*/true);
      return;
    }
    --budget;
    Task& task = draining_[next_++];
    // The turn owns taken_: a plain store. Release: a Depth() that reads it reads pushed_ no
    // smaller (the push of this task happened before).
    taken_.store(taken_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    executing_.store(true, std::memory_order_relaxed);
    if (!core_internal::RunCatching(
            task, [&] { return "task processor '" + Name() + "': a task"; },
            SourceLocation::current())) {
      failed_.fetch_add(1, std::memory_order_relaxed);
    }
    // One writer at a time (turns never overlap): a plain store, not a read-modify-write.
    // Counted before the task is destroyed, which is what releases a PushAndWait caller.
    processed_.store(processed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    task.Reset();
    executing_.store(false, std::memory_order_relaxed);
    if (PLEXUS_UNLIKELY(alerted_.load(std::memory_order_relaxed)) &&
        Depth() <= low_water_.load(std::memory_order_relaxed)) {
      CheckAlert();
    }
  }
  FinishTurn(started, outer);
}

bool TaskProcessor::PollForPushes() const noexcept {
  const std::uint64_t taken = taken_.load(std::memory_order_relaxed);
  for (int i = 0; i < kEndOfTurnPolls; ++i) {
    if (pushed_.load(std::memory_order_relaxed) != taken) return true;
    if (pool_->HasQueuedWork() || suspended_.load(std::memory_order_relaxed) > 0) return false;
    core_internal::CpuRelax();
  }
  return pushed_.load(std::memory_order_relaxed) != taken;
}

void TaskProcessor::FinishTurn(BusyClock started, TaskProcessor* outer) {
  StopBusyClock(started);
  const bool free_self = free_after_turn_;
  EndTurnLocked();
  // A turn that stops for a suspension may leave pushes in incoming_ (kPushed stays).
  mu_.ReleaseWith(0, TurnWord::kScheduled | (incoming_.empty() ? TurnWord::kPushed : 0));
  tls_current = outer;
  // Nothing may touch `this` past the unlock unless we own its end.
  if (free_self) delete this;
}

// -----------------------------------------------------------------------------
// Suspension and shutdown
// -----------------------------------------------------------------------------

void TaskProcessor::Suspend() {
  suspended_.fetch_add(1, std::memory_order_acq_rel);
}

void TaskProcessor::Resume(SourceLocation where) {
  bool schedule = false;
  bool unbalanced = false;
  {
    MutexLock lock(mu_);
    // A compare-and-swap, not a load and a store: Suspend adds without mu_, and a suspension
    // that came between the two would be lost.
    std::uint32_t count = suspended_.load(std::memory_order_relaxed);
    do {
      if (count == 0) break;
    } while (!suspended_.compare_exchange_weak(count, count - 1, std::memory_order_acq_rel,
                                               std::memory_order_relaxed));
    if (count == 0) {
      unbalanced = true;
    } else {
      if (count == 1 && !ScheduledLocked() && (!incoming_.empty() || next_ < draining_.size())) {
        mu_.Change(TurnWord::kScheduled, 0);
        schedule = true;
      }
    }
  }
  if (unbalanced) {
    ReportMisuse("TaskProcessor::Resume of '" + Name() + "', which is not suspended", where);
    return;
  }
  if (schedule) ScheduleTurn();
}

bool TaskProcessor::IsSuspended() const noexcept {
  return suspended_.load(std::memory_order_relaxed) > 0;
}

void TaskProcessor::WaitForTurnEndLocked() {
  TurnEnds& ends = TurnEnded();
  // While anyone waits, the turn's end takes the lock (EndTurnLocked wakes the waiters).
  if (turn_waiters_++ == 0) mu_.Change(TurnWord::kSlowEnd, 0);
  while (ScheduledLocked()) {
    // Read under mu_: the turn end we wait for advances it after this, under mu_ too.
    ends.mu.Acquire();
    const std::uint64_t seen = ends.generation;
    mu_.Release();
    while (ends.generation == seen) ends.cv.Wait(ends.mu);
    ends.mu.Release();
    mu_.Acquire();
  }
  if (--turn_waiters_ == 0 && !free_after_turn_) mu_.Change(0, TurnWord::kSlowEnd);
}

std::size_t TaskProcessor::Shutdown(ShutdownMode mode) {
  // Waiting for the turn from a pool worker: the turn may need a thread of the very pool this
  // one blocks. Entered before mu_, so that the pool's lock is never taken under ours.
  std::optional<ThreadPool::ScopedBlockingWait> blocking;
  if (tls_current != this) blocking.emplace();
  // Declared before the lock is taken: the discarded tasks are destroyed after it was let go.
  std::vector<Task> discarded;
  bool schedule = false;
  mu_.Acquire();
  shut_down_ = true;
  if (mode == ShutdownMode::kDiscard) {
    discarded.swap(incoming_);
    // The rest of the current batch belongs to the turn; we may take it only when no turn
    // runs, or when we are that turn (a task shutting down its own task processor).
    if (!ScheduledLocked() || tls_current == this) {
      for (std::size_t i = next_; i < draining_.size(); ++i) {
        discarded.push_back(std::move(draining_[i]));
      }
      draining_.erase(draining_.begin() + static_cast<std::ptrdiff_t>(next_), draining_.end());
    } else {
      // A turn runs elsewhere: stop it taking new tasks until we have what it has left.
      suspended_.fetch_add(1, std::memory_order_acq_rel);
      WaitForTurnEndLocked();
      suspended_.fetch_sub(1, std::memory_order_acq_rel);
      for (std::size_t i = next_; i < draining_.size(); ++i) {
        discarded.push_back(std::move(draining_[i]));
      }
      draining_.clear();
      next_ = 0;
    }
    // No turn runs now (or this is it): the holder of mu_ owns taken_.
    taken_.store(taken_.load(std::memory_order_relaxed) + discarded.size(),
                 std::memory_order_release);
    discarded_.fetch_add(discarded.size(), std::memory_order_relaxed);
  } else if (suspended_.load(std::memory_order_relaxed) > 0) {
    // Draining means running everything: a suspended task processor is resumed for it.
    suspended_.store(0, std::memory_order_release);
    if (!ScheduledLocked() && (!incoming_.empty() || next_ < draining_.size())) {
      mu_.Change(TurnWord::kScheduled, 0);
      schedule = true;
    }
  }
  if (schedule) {
    mu_.Release();
    ScheduleTurn();
    mu_.Acquire();
  }
  if (tls_current != this) WaitForTurnEndLocked();
  mu_.Release();
  const std::size_t count = discarded.size();
  if (count > 0) {
    Log(LogLevel::kInfo, "task processor '" + Name() + "' shut down, discarding " +
                             std::to_string(count) + " queued task(s)");
  }
  if (alerted_.load(std::memory_order_relaxed)) CheckAlert();
  return count;  // the discarded tasks are destroyed here, outside every lock
}

bool TaskProcessor::IsShutDown() const {
  MutexLock lock(mu_);
  return shut_down_;
}

// -----------------------------------------------------------------------------
// Alerts and statistics
// -----------------------------------------------------------------------------

void TaskProcessor::SetAlertLevels(std::uint32_t low_water, std::uint32_t high_water,
                                   SourceLocation where) {
  if (high_water < low_water) {
    ReportMisuse("TaskProcessor::SetAlertLevels: high water below low water", where);
    return;
  }
  {
    AlertState& alerts = Alerts();
    MutexLock lock(alerts.mu);
    low_water_.store(low_water, std::memory_order_relaxed);
    high_water_.store(high_water, std::memory_order_relaxed);
  }
  CheckAlert();
}

void TaskProcessor::CheckAlert() {
  AlertState& alerts = Alerts();
  {
    MutexLock lock(alerts.mu);
    const std::size_t depth = Depth();
    const bool was = alerted_.load(std::memory_order_relaxed);
    bool now = was;
    if (!was && depth >= high_water_.load(std::memory_order_relaxed)) now = true;
    if (was && depth <= low_water_.load(std::memory_order_relaxed)) now = false;
    if (now == was) return;
    alerted_.store(now, std::memory_order_relaxed);
    RecordQueueAlertChangeLocked(alerts, Name(), now, depth,
                                 high_water_.load(std::memory_order_relaxed));
  }
  DeliverAlertChanges(alerts);
}

void ReportQueueAlertChange(std::string_view name, bool raised, std::size_t depth,
                            std::size_t high_water) {
  AlertState& alerts = Alerts();
  {
    MutexLock lock(alerts.mu);
    RecordQueueAlertChangeLocked(alerts, name, raised, depth, high_water);
  }
  DeliverAlertChanges(alerts);
}

TaskProcessorAlertHandler SetTaskProcessorAlertHandler(TaskProcessorAlertHandler handler) {
  AlertState& alerts = Alerts();
  MutexLock lock(alerts.mu);
  TaskProcessorAlertHandler previous = std::exchange(alerts.handler, std::move(handler));
  // The previous handler may be running on the delivering thread: return once it is not, so
  // that the caller may destroy what it uses. From the handler itself, it cannot wait.
  while (alerts.in_handler && alerts.deliverer != CurrentThreadToken()) {
    alerts.handler_returned.Wait(alerts.mu);
  }
  return previous;
}

std::size_t TaskProcessorSubsystemAlertCount(std::string_view subsystem) {
  AlertState& alerts = Alerts();
  MutexLock lock(alerts.mu);
  auto it = alerts.by_subsystem.find(subsystem);
  return it == alerts.by_subsystem.end() ? 0 : it->second;
}

std::size_t TaskProcessorProcessAlertCount() {
  AlertState& alerts = Alerts();
  MutexLock lock(alerts.mu);
  return alerts.process;
}

TaskProcessorStats TaskProcessor::Stats() const {
  TaskProcessorStats s;
  s.name = Name();
  s.processed = processed_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.discarded = discarded_.load(std::memory_order_relaxed);
  {
    // Both under mu_: no push is halfway between counting a task and raising max_depth_, so
    // the depth read is never above the maximum read.
    MutexLock lock(mu_);
    s.depth = Depth();
    s.max_depth = max_depth_;
  }
  s.executing = executing_.load(std::memory_order_relaxed);
  s.alerted = alerted_.load(std::memory_order_relaxed);
  s.high_water = high_water_.load(std::memory_order_relaxed);
  s.low_water = low_water_.load(std::memory_order_relaxed);
  s.suspended = suspended_.load(std::memory_order_relaxed);
  s.busy = std::chrono::nanoseconds(busy_ns_.load(std::memory_order_relaxed));
  return s;
}

std::string TaskProcessor::Name() const {
  return name_.empty() ? "anonymous-" + std::to_string(serial_) : name_;
}

std::string_view TaskProcessor::Subsystem() const noexcept {
  return SubsystemOf(name_);
}

}  // namespace plexus
