// TaskProcessor: a serializer on a ThreadPool.
//
// Producers append to `incoming_` under the task processor's mutex. While the task processor
// has work, exactly one "turn" is queued on or running in the pool (`scheduled_`); a turn
// swaps `incoming_` with the empty `draining_` array (O(1), both keep their capacity, so the
// steady state allocates nothing), runs up to `batch_limit_` tasks from it without any lock,
// and either queues itself again behind other pool work (fairness) or, finding nothing left,
// ends (`scheduled_ = false`). The empty -> non-empty transition of an idle task processor is
// the only push that touches the pool.
//
// Waiting for a turn to end (Shutdown, the last reference) uses one process-wide
// condition_variable_any: turns end often, but waiters are rare, and a condition variable per
// task processor would double its idle size.

#include "plexus/exec/task_processor.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "plexus/core/clock.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"

namespace plexus {

namespace {

thread_local TaskProcessor* tls_current = nullptr;

std::condition_variable_any& TurnEndedCv() {
  static auto* cv = new std::condition_variable_any();
  return *cv;
}

// Process-wide alert state. Alert changes are rare (a level crossing), so one lock is fine.
struct AlertState {
  std::mutex mu;
  TaskProcessorAlertHandler handler;
  std::map<std::string, std::size_t, std::less<>> by_subsystem;
  std::size_t process = 0;
};
AlertState& Alerts() {
  static auto* state = new AlertState();
  return *state;
}

std::string_view SubsystemOf(std::string_view name) {
  const std::size_t slash = name.find('/');
  return slash == std::string_view::npos ? std::string_view() : name.substr(0, slash);
}

}  // namespace

// Requires Alerts().mu.
void ReportQueueAlertChangeLocked(std::string_view name, bool raised, std::size_t depth,
                                  std::size_t high_water);

// The registry of live task processors: all of them in an intrusive list (for List), the
// named ones also by name (for Find and uniqueness).
class TaskProcessorRegistry {
 public:
  static TaskProcessorRegistry& Get() {
    static auto* registry = new TaskProcessorRegistry();
    return *registry;
  }

  std::mutex mu;
  TaskProcessor* head = nullptr;
  std::size_t live = 0;
  std::unordered_map<std::string_view, TaskProcessor*> by_name;
  std::uint32_t next_serial = 1;

  void LinkLocked(TaskProcessor* tp) {
    tp->next_live_ = head;
    if (head != nullptr) head->prev_ = tp;
    head = tp;
    ++live;
    if (!tp->name_.empty()) by_name.emplace(tp->name_, tp);
  }

  void UnlinkLocked(TaskProcessor* tp) {
    if (tp->prev_ != nullptr) tp->prev_->next_live_ = tp->next_live_;
    if (tp->next_live_ != nullptr) tp->next_live_->prev_ = tp->prev_;
    if (head == tp) head = tp->next_live_;
    --live;
    if (!tp->name_.empty()) by_name.erase(tp->name_);
  }
};

// -----------------------------------------------------------------------------
// Creation and destruction
// -----------------------------------------------------------------------------

TaskProcessor::TaskProcessor(TaskProcessorOptions&& options, Ref<ThreadPool> pool)
    : serial_(TaskProcessorRegistry::Get().next_serial++),  // registry lock held by Create
      batch_limit_(std::max<std::uint32_t>(1, options.batch_limit)),
      low_water_(options.low_water),
      high_water_(options.high_water),
      discard_on_release_(options.discard_on_release),
      name_(std::move(options.name)),
      pool_(std::move(pool)) {}

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
    std::lock_guard lock(registry.mu);
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
    std::lock_guard lock(registry.mu);
    registry.UnlinkLocked(this);
  }
  if (alerted_.load(std::memory_order_relaxed)) {
    // Leaving while alerted: take this task processor out of the alert counts.
    depth_.store(0, std::memory_order_relaxed);
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
    std::lock_guard lock(mu_);
    self->free_after_turn_ = true;
    return;
  }
  (void)self->Shutdown(mode);
  delete self;
}

Ref<TaskProcessor> TaskProcessor::Find(std::string_view name) {
  TaskProcessorRegistry& registry = TaskProcessorRegistry::Get();
  std::lock_guard lock(registry.mu);
  auto it = registry.by_name.find(name);
  if (it == registry.by_name.end() || !it->second->TryAddRef()) return nullptr;
  return Ref<TaskProcessor>::Adopt(it->second);
}

TaskProcessor* TaskProcessor::Current() noexcept {
  return tls_current;
}

std::size_t TaskProcessor::LiveCount() {
  TaskProcessorRegistry& registry = TaskProcessorRegistry::Get();
  std::lock_guard lock(registry.mu);
  return registry.live;
}

std::vector<TaskProcessorStats> TaskProcessor::List() {
  std::vector<Ref<TaskProcessor>> alive;
  {
    TaskProcessorRegistry& registry = TaskProcessorRegistry::Get();
    std::lock_guard lock(registry.mu);
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
  std::size_t depth = 0;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return false;
    incoming_.push_back(std::move(task));
    depth = depth_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (depth > max_depth_) max_depth_ = static_cast<std::uint32_t>(depth);
    if (!scheduled_ && suspended_.load(std::memory_order_relaxed) == 0) {
      scheduled_ = true;
      schedule = true;
    }
  }
  if (PLEXUS_UNLIKELY(depth >= high_water_.load(std::memory_order_relaxed)) &&
      !alerted_.load(std::memory_order_relaxed)) {
    CheckAlert();
  }
  if (schedule) ScheduleTurn();
  return true;
}

void TaskProcessor::ScheduleTurn() {
  if (pool_->Push([this] { RunTurn(); })) return;
  // Only a pool shut down under a live task processor gets here (Push reported it).
  std::lock_guard lock(mu_);
  EndTurnLocked();
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
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
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
      std::lock_guard lock(waiter->mu);
      waiter->done = true;
      waiter->cv.notify_one();
    }
  };
  const bool pushed = Push(
      [inner = std::move(task), signal = Signal(&waiter)]() mutable {
        signal.waiter->ran = true;  // read by the waiter after `done`, under its lock
        inner();
      },
      where);
  std::unique_lock lock(waiter.mu);
  waiter.cv.wait(lock, [&] { return waiter.done; });
  return pushed && waiter.ran;
}

// -----------------------------------------------------------------------------
// The turn
// -----------------------------------------------------------------------------

void TaskProcessor::EndTurnLocked() {
  scheduled_ = false;
  executing_.store(false, std::memory_order_relaxed);
  if (turn_waiters_ > 0) TurnEndedCv().notify_all();
}

void TaskProcessor::RunTurn() {
  TaskProcessor* const outer = tls_current;
  tls_current = this;
  const std::int64_t started = MonotonicNanos();
  std::uint32_t budget = batch_limit_;
  for (;;) {
    if (next_ == draining_.size()) {
      draining_.clear();
      next_ = 0;
      std::unique_lock lock(mu_);
      if (incoming_.empty() || suspended_.load(std::memory_order_relaxed) > 0) {
        busy_ns_.fetch_add(MonotonicNanos() - started, std::memory_order_relaxed);
        const bool free_self = free_after_turn_;
        EndTurnLocked();
        lock.unlock();
        tls_current = outer;
        // Nothing may touch `this` past the unlock unless we own its end.
        if (free_self) delete this;
        return;
      }
      incoming_.swap(draining_);
    }
    if (PLEXUS_UNLIKELY(suspended_.load(std::memory_order_acquire) > 0)) {
      std::unique_lock lock(mu_);
      if (suspended_.load(std::memory_order_relaxed) > 0) {
        busy_ns_.fetch_add(MonotonicNanos() - started, std::memory_order_relaxed);
        const bool free_self = free_after_turn_;
        EndTurnLocked();  // draining_ keeps the rest; the turn after Resume continues it
        lock.unlock();
        tls_current = outer;
        if (free_self) delete this;
        return;
      }
    }
    if (budget == 0) {
      // Fairness: let the pool's other work run, and come back behind it.
      busy_ns_.fetch_add(MonotonicNanos() - started, std::memory_order_relaxed);
      tls_current = outer;
      ScheduleTurn();
      return;
    }
    --budget;
    Task& task = draining_[next_++];
    depth_.fetch_sub(1, std::memory_order_relaxed);
    executing_.store(true, std::memory_order_relaxed);
    if (!core_internal::RunCatching(
            task, [&] { return "task processor '" + Name() + "': a task"; },
            SourceLocation::current())) {
      failed_.fetch_add(1, std::memory_order_relaxed);
    }
    // One writer at a time (turns never overlap): a plain store, not a read-modify-write.
    // Counted before the task is destroyed, which is what releases a PushAndWait caller.
    processed_.store(processed_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    task.reset();
    executing_.store(false, std::memory_order_relaxed);
    if (PLEXUS_UNLIKELY(alerted_.load(std::memory_order_relaxed)) &&
        depth_.load(std::memory_order_relaxed) <= low_water_.load(std::memory_order_relaxed)) {
      CheckAlert();
    }
  }
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
    std::lock_guard lock(mu_);
    const std::uint32_t count = suspended_.load(std::memory_order_relaxed);
    if (count == 0) {
      unbalanced = true;
    } else {
      suspended_.store(count - 1, std::memory_order_release);
      if (count == 1 && !scheduled_ && (!incoming_.empty() || next_ < draining_.size())) {
        scheduled_ = true;
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

void TaskProcessor::WaitForTurnEnd(std::unique_lock<std::mutex>& lock) {
  ++turn_waiters_;
  TurnEndedCv().wait(lock, [&] { return !scheduled_; });
  --turn_waiters_;
}

std::size_t TaskProcessor::Shutdown(ShutdownMode mode) {
  std::vector<Task> discarded;
  bool schedule = false;
  std::unique_lock lock(mu_);
  shut_down_ = true;
  if (mode == ShutdownMode::kDiscard) {
    discarded.swap(incoming_);
    // The rest of the current batch belongs to the turn; we may take it only when no turn
    // runs, or when we are that turn (a task shutting down its own task processor).
    if (!scheduled_ || tls_current == this) {
      for (std::size_t i = next_; i < draining_.size(); ++i) {
        discarded.push_back(std::move(draining_[i]));
      }
      draining_.erase(draining_.begin() + static_cast<std::ptrdiff_t>(next_), draining_.end());
    } else {
      // A turn runs elsewhere: stop it taking new tasks until we have what it has left.
      suspended_.fetch_add(1, std::memory_order_acq_rel);
      WaitForTurnEnd(lock);
      suspended_.fetch_sub(1, std::memory_order_acq_rel);
      for (std::size_t i = next_; i < draining_.size(); ++i) {
        discarded.push_back(std::move(draining_[i]));
      }
      draining_.clear();
      next_ = 0;
    }
    depth_.fetch_sub(discarded.size(), std::memory_order_relaxed);
    discarded_.fetch_add(discarded.size(), std::memory_order_relaxed);
  } else if (suspended_.load(std::memory_order_relaxed) > 0) {
    // Draining means running everything: a suspended task processor is resumed for it.
    suspended_.store(0, std::memory_order_release);
    if (!scheduled_ && (!incoming_.empty() || next_ < draining_.size())) {
      scheduled_ = true;
      schedule = true;
    }
  }
  if (schedule) {
    lock.unlock();
    ScheduleTurn();
    lock.lock();
  }
  if (tls_current != this) WaitForTurnEnd(lock);
  lock.unlock();
  const std::size_t count = discarded.size();
  if (count > 0) {
    Log(LogLevel::kInfo, "task processor '" + Name() + "' shut down, discarding " +
                             std::to_string(count) + " queued task(s)");
  }
  if (alerted_.load(std::memory_order_relaxed)) CheckAlert();
  return count;  // the discarded tasks are destroyed here, outside every lock
}

bool TaskProcessor::IsShutDown() const {
  std::lock_guard lock(mu_);
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
    std::lock_guard lock(Alerts().mu);
    low_water_.store(low_water, std::memory_order_relaxed);
    high_water_.store(high_water, std::memory_order_relaxed);
  }
  CheckAlert();
}

void TaskProcessor::CheckAlert() {
  AlertState& alerts = Alerts();
  std::lock_guard lock(alerts.mu);
  const std::size_t depth = depth_.load(std::memory_order_relaxed);
  const bool was = alerted_.load(std::memory_order_relaxed);
  bool now = was;
  if (!was && depth >= high_water_.load(std::memory_order_relaxed)) now = true;
  if (was && depth <= low_water_.load(std::memory_order_relaxed)) now = false;
  if (now == was) return;
  alerted_.store(now, std::memory_order_relaxed);
  ReportQueueAlertChangeLocked(Name(), now, depth, high_water_.load(std::memory_order_relaxed));
}

// Counts the change; returns the subsystem's count after it. Requires Alerts().mu.
std::size_t CountQueueAlertChangeLocked(std::string_view subsystem, bool raised) {
  AlertState& alerts = Alerts();
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
  return subsystem_count;
}

void LogQueueAlertRaised(std::string_view name, std::size_t depth, std::size_t high_water) {
  Log(LogLevel::kWarning, "queue '" + std::string(name) + "' reached " + std::to_string(depth) +
                              " waiting items (high water mark: " + std::to_string(high_water) +
                              ")");
}

void ReportQueueAlertChangeLocked(std::string_view name, bool raised, std::size_t depth,
                                  std::size_t high_water) {
  AlertState& alerts = Alerts();
  const std::string_view subsystem = SubsystemOf(name);
  const std::size_t subsystem_count = CountQueueAlertChangeLocked(subsystem, raised);
  if (raised) LogQueueAlertRaised(name, depth, high_water);
  if (alerts.handler) {
    alerts.handler(
        TaskProcessorAlert{name, subsystem, raised, depth, subsystem_count, alerts.process});
  }
}

// Unlike a task processor's own check, this logs and calls the handler after letting go of the
// alert lock: the handler may then publish, even to the queue it hears about. The caller
// reports one queue's changes one at a time, so they still arrive in order for that queue.
void ReportQueueAlertChange(std::string_view name, bool raised, std::size_t depth,
                            std::size_t high_water) {
  const std::string_view subsystem = SubsystemOf(name);
  TaskProcessorAlertHandler handler;
  std::size_t subsystem_count = 0;
  std::size_t process_count = 0;
  {
    std::lock_guard lock(Alerts().mu);
    subsystem_count = CountQueueAlertChangeLocked(subsystem, raised);
    process_count = Alerts().process;
    handler = Alerts().handler;
  }
  if (raised) LogQueueAlertRaised(name, depth, high_water);
  if (handler) {
    handler(TaskProcessorAlert{name, subsystem, raised, depth, subsystem_count, process_count});
  }
}

TaskProcessorAlertHandler SetTaskProcessorAlertHandler(TaskProcessorAlertHandler handler) {
  std::lock_guard lock(Alerts().mu);
  return std::exchange(Alerts().handler, std::move(handler));
}

std::size_t TaskProcessorSubsystemAlertCount(std::string_view subsystem) {
  std::lock_guard lock(Alerts().mu);
  auto it = Alerts().by_subsystem.find(subsystem);
  return it == Alerts().by_subsystem.end() ? 0 : it->second;
}

std::size_t TaskProcessorProcessAlertCount() {
  std::lock_guard lock(Alerts().mu);
  return Alerts().process;
}

TaskProcessorStats TaskProcessor::Stats() const {
  TaskProcessorStats s;
  s.name = Name();
  s.processed = processed_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.discarded = discarded_.load(std::memory_order_relaxed);
  s.depth = depth_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    s.max_depth = max_depth_;
  }
  s.executing = executing_.load(std::memory_order_relaxed);
  s.alerted = alerted_.load(std::memory_order_relaxed);
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
