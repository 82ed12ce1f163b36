// -----------------------------------------------------------------------------
// plexus/exec/task_processor.h
// -----------------------------------------------------------------------------
//
// TaskProcessor is a serializer: it runs the tasks pushed to it one at a time, in push order.
// It is Asterisk's taskprocessor (main/taskprocessor.c) and taskpool serializer
// (main/taskpool.c) in one type, with what those lack:
//
//   * M:N by default: task processors borrow threads of a shared ThreadPool only while they
//     have work, so 100 000 idle ones cost memory (a few hundred bytes each), no threads. A
//     dedicated thread is an option (`dedicated_thread`).
//   * Fairness: a busy task processor gives its thread back after `batch_limit` tasks and
//     queues itself behind the others (Asterisk's threadpool serializer drains everything).
//   * Steady-state pushes allocate nothing: queued tasks live in two recycled arrays (one the
//     producers fill, one the consumer drains, swapped in O(1)), and Task stores small
//     closures inline.
//   * Alerts are callbacks and readable state, per task processor, per subsystem (the part
//     of the name before '/') and process-wide — not only a log warning.
//   * Shutdown drains or discards, and says what it discarded.
//
// Lifetime: a TaskProcessor is shared through Ref<TaskProcessor>. Dropping the last
// reference shuts it down (draining, unless `discard_on_release`) and returns once its
// running task finished — except from one of its own tasks, where it cannot wait for itself:
// the object then goes away when that task returns.
//
// Example:
//
//   auto dialog_tp = plexus::TaskProcessor::Create({.name = "pjsip/dialog-42"});
//   dialog_tp->Push([d = dialog] { d->HandleTimeout(); });
//
// Thread safety: thread-safe; every member may be called from any thread, including from its
// own tasks (PushAndWait then runs the task inline instead of deadlocking). Tasks of one task
// processor never run concurrently with each other, and each one happens-before the next.

#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/exec/internal/turn_word.h"
#include "plexus/exec/task.h"
#include "plexus/exec/thread_pool.h"
#include "plexus/sync/mutex.h"

namespace plexus {

enum class ShutdownMode {
  kDrain,    // every queued task runs first
  kDiscard,  // queued tasks are destroyed without running; the running one finishes
};

struct TaskProcessorOptions {
  // Unique among live task processors when not empty (a duplicate is refused); the part
  // before the first '/' is the subsystem. Empty: anonymous, not registered for lookup.
  std::string name;
  // The pool whose threads run the tasks; null: ThreadPool::Shared(). Ignored with
  // `dedicated_thread`, which gives the task processor a one-thread pool of its own.
  Ref<ThreadPool> pool;
  bool dedicated_thread = false;
  // Tasks run per turn on a pool thread before the task processor yields it.
  std::uint32_t batch_limit = 64;
  // Queue depths (tasks waiting, the running one not counted) that raise and clear the
  // alert: raised when the depth reaches high_water, cleared when it falls to low_water.
  std::uint32_t high_water = 500;
  std::uint32_t low_water = 450;
  // What dropping the last reference does with queued tasks.
  bool discard_on_release = false;
};

// A change of alert state, as given to the alert handler.
struct TaskProcessorAlert {
  std::string_view processor;  // the task processor's name
  std::string_view subsystem;  // its subsystem (may be empty)
  bool raised;                 // true: the depth reached high water; false: cleared
  std::size_t depth;
  std::size_t subsystem_alerts;  // task processors of the subsystem in alert, after this change
  std::size_t process_alerts;    // task processors in alert process-wide, after this change
};
// Installs the process-wide alert handler (nullptr removes it); returns the previous one,
// which is no longer running once this returns (unless called from that handler itself).
// Changes reach the handler one at a time and in the order they happened, on the thread
// whose push or task crossed the level, unless another thread is delivering earlier changes
// at the time: that thread then delivers this one after them. No plexus lock is held while
// the handler runs, so it may push to task processors, query the alert counts and replace
// itself; a change it causes is delivered after it returns. A handler that throws is logged.
using TaskProcessorAlertHandler = std::function<void(const TaskProcessorAlert&)>;
TaskProcessorAlertHandler SetTaskProcessorAlertHandler(TaskProcessorAlertHandler handler);
std::size_t TaskProcessorSubsystemAlertCount(std::string_view subsystem);
std::size_t TaskProcessorProcessAlertCount();

// The same machinery for other queues (the bus's subscriptions): reports that the queue `name`
// (its subsystem is the part before the first '/') entered (`raised`) or left its alert state
// at `depth`, updating the subsystem and process counts, logging a raise and calling the
// handler. The caller keeps the hysteresis (one report per crossing, raise and clear paired)
// and reports one queue's changes one at a time. The log and the handler run after the alert
// lock is let go, so the handler may publish to such a queue; the caller holds no lock either.
void ReportQueueAlertChange(std::string_view name, bool raised, std::size_t depth,
                            std::size_t high_water);

// A snapshot of a task processor's counters.
struct TaskProcessorStats {
  std::string name;
  std::uint64_t processed = 0;  // tasks that ran (threw or not)
  std::uint64_t failed = 0;     // tasks that threw
  std::uint64_t discarded = 0;  // tasks destroyed unrun by a discarding shutdown
  std::size_t depth = 0;        // tasks waiting
  std::size_t max_depth = 0;    // the most tasks ever waiting at once
  bool executing = false;       // a task is running now
  bool alerted = false;
  std::uint32_t high_water = 0;  // the alert is raised at this depth...
  std::uint32_t low_water = 0;   // ...and cleared at this one
  std::uint32_t suspended = 0;   // suspension count
  // Total time spent running tasks, estimated: one turn in eight per pool thread is timed and
  // counted eight times (and each task processor's first turn is timed once).
  std::chrono::nanoseconds busy{0};
};

class TaskProcessor final : public RefCounted {
 public:
  // Creates a task processor. A name already in use is misuse: reported, and null returned.
  static Ref<TaskProcessor> Create(TaskProcessorOptions options = {},
                                   SourceLocation where = SourceLocation::current());
  // The live task processor with this name, or null.
  static Ref<TaskProcessor> Find(std::string_view name);
  // The task processor whose task the calling thread is running, or null.
  static TaskProcessor* Current() noexcept;
  // Snapshots of every live task processor, named or not.
  static std::vector<TaskProcessorStats> List();
  // A table of List(), one line per task processor.
  static std::string ListText();
  static std::size_t LiveCount();

  // Queues `task` behind every task pushed before it. An empty task, or a push after
  // Shutdown, is misuse: reported, and false returned (the task is destroyed unrun).
  bool Push(Task task, SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(mu_);

  // As Push, for callers that race a shutdown on purpose: a task processor that was shut
  // down refuses without a misuse report, returns false and leaves `task` untouched; on
  // success `task` is moved from.
  bool TryPush(Task& task) PLEXUS_EXCLUDES(mu_);

  // Pushes `task` and returns once it ran (true), or was discarded by a shutdown (false).
  // Called from one of this task processor's own tasks, runs `task` inline at once. Called
  // from a pool worker (a task of another task processor, of this pool or another), it blocks
  // that worker, and the worker's pool counts it as blocked: when every running worker of the
  // pool is blocked so and work is queued, the pool lends itself a thread for the wait (above
  // its max_size), so the target's turn always gets one, even on a one-thread pool. What the
  // pool cannot undo is a cycle: tasks that PushAndWait on each other's task processors wait
  // for ever, as with any two locks taken in opposite orders.
  bool PushAndWait(Task task, SourceLocation where = SourceLocation::current())
      PLEXUS_EXCLUDES(mu_);

  // Suspensions are counted: while the count is above zero no task starts (one that is
  // running finishes). Resume without a matching Suspend is misuse.
  void Suspend();
  void Resume(SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(mu_);
  bool IsSuspended() const noexcept;

  // Stops accepting tasks. kDrain runs every queued task (resuming a suspended task
  // processor to do so); kDiscard destroys them unrun. Returns the number discarded, once
  // the running task (if any) finished — or at once when called from one of this task
  // processor's own tasks, which cannot wait for itself. Idempotent (a second call returns
  // 0 and waits the same way). Called from a pool worker, the wait counts the worker as
  // blocked, as PushAndWait does, so the turn it waits for gets a thread.
  std::size_t Shutdown(ShutdownMode mode = ShutdownMode::kDrain) PLEXUS_EXCLUDES(mu_);
  bool IsShutDown() const PLEXUS_EXCLUDES(mu_);

  // Sets the alert levels (high_water < low_water is misuse) and re-evaluates the alert.
  void SetAlertLevels(std::uint32_t low_water, std::uint32_t high_water,
                      SourceLocation where = SourceLocation::current());
  bool IsAlerted() const noexcept { return alerted_.load(std::memory_order_relaxed); }

  TaskProcessorStats Stats() const PLEXUS_EXCLUDES(mu_);
  // The name given at creation, or "anonymous-<n>".
  std::string Name() const;
  std::string_view Subsystem() const noexcept;
  // Tasks waiting, the running one not counted: a snapshot, which concurrent pushes and
  // turns may have changed by the time it returns.
  std::size_t Depth() const noexcept {
    // taken_ first: every push it counts happened before, so pushed_ is read no smaller.
    const std::uint64_t taken = taken_.load(std::memory_order_acquire);
    return static_cast<std::size_t>(pushed_.load(std::memory_order_relaxed) - taken);
  }
  ThreadPool& Pool() const noexcept { return *pool_; }

 private:
  TaskProcessor(TaskProcessorOptions&& options, Ref<ThreadPool> pool);
  ~TaskProcessor() override;
  void LastReferenceDropped() const override;

  // The lock of the registry of live task processors (task_processor.cc).
  static Mutex& RegistryMutex();

  // The job a pool thread runs while the task processor has work.
  void RunTurn() PLEXUS_EXCLUDES(mu_);
  // Busy time, sampled (see TaskProcessorStats::busy): a turn's start and how many times its
  // duration counts (0: the turn is not timed).
  struct BusyClock {
    std::int64_t started;
    std::int64_t weight;
  };
  static constexpr std::int64_t kBusySampleTurns = 8;
  BusyClock StartBusyClock() noexcept;
  void StopBusyClock(BusyClock clock) noexcept;
  // At the end of a batch: waits briefly for a push; false when none came, or other work of
  // the pool waits for the thread, or the task processor was suspended.
  bool PollForPushes() const noexcept;
  // The one way out of a turn that found nothing to run (or found the processor suspended):
  // ends it, wakes shutdown waiters, restores `outer` as the current processor, and frees the
  // processor when its last reference went from inside the turn.
  void FinishTurn(BusyClock started, TaskProcessor* outer) PLEXUS_RELEASE(mu_);
  // Queues a turn: on the calling worker's run-next slot, or (`yielding`, a turn that used up
  // its batch) behind the pool's other work.
  void ScheduleTurn(bool yielding = false) PLEXUS_EXCLUDES(mu_);
  // The turn ends (nothing to run, or suspended): wakes shutdown waiters. The caller clears
  // kScheduled as it lets go of mu_.
  void EndTurnLocked() PLEXUS_REQUIRES(mu_);
  // Whether a turn is queued or running.
  bool ScheduledLocked() const PLEXUS_REQUIRES(mu_) {
    return mu_.Has(exec_internal::TurnWord::kScheduled);
  }
  void CheckAlert() PLEXUS_EXCLUDES(mu_);
  // Waits until no turn is queued or running; lets go of mu_ while it waits.
  void WaitForTurnEndLocked() PLEXUS_REQUIRES(mu_);

  friend class TaskProcessorRegistry;

  // The layout keeps the two sides of the queue off each other's cache lines, whatever the
  // allocation's alignment (malloc gives 16): what producers write on every push sits at the
  // front, what the running turn writes on every task at the back, and more than a cache line
  // of members that neither writes per push or task lies between them (a static_assert in
  // task_processor.cc checks the distance). Members a side reads on every operation sit with
  // that side. Small members first within each part, so that an idle task processor, with its
  // allocation header, fits in 256 bytes (measured by BM_TaskProcessor_Create_Destroy's
  // bytes/tps).

  // --- Producers' end: written by every push, under mu_.
  // A leaf lock (nothing is locked under it) taken on every push and at a turn's batch
  // boundaries; four bytes, its uncontended pair inline. Its word also holds whether a turn is
  // queued on the pool or running (kScheduled), whether a push went to incoming_ since the
  // turn last looked (kPushed), and whether the turn's end must take the lock (kSlowEnd: a
  // waiter, or free_after_turn_), so that a turn nobody pushed to ends without the lock.
  mutable exec_internal::TurnWord mu_;
  std::atomic<std::uint32_t> high_water_;  // read by every push
  std::uint32_t max_depth_ PLEXUS_GUARDED_BY(mu_) = 0;
  std::uint32_t turn_waiters_ PLEXUS_GUARDED_BY(mu_) = 0;
  bool shut_down_ PLEXUS_GUARDED_BY(mu_) = false;
  // The last reference went from inside a task: the turn frees the processor as it ends.
  bool free_after_turn_ PLEXUS_GUARDED_BY(mu_) = false;
  // Tasks ever queued. Written under mu_ only (a plain store), read without it: the depth is
  // pushed_ - taken_.
  std::atomic<std::uint64_t> pushed_{0};
  // The producers' copy of taken_, read again only when the estimate it gives (pushed_ -
  // taken_seen_, never below the true depth) reaches high water or a new max_depth_: a push
  // otherwise reads nothing the running turn writes.
  std::uint64_t taken_seen_ PLEXUS_GUARDED_BY(mu_) = 0;
  std::vector<Task> incoming_ PLEXUS_GUARDED_BY(mu_);  // where pushes go

  // --- Neither side's per operation: more than a cache line between the two ends.
  const std::uint32_t serial_;
  std::atomic<std::uint32_t> low_water_;
  const std::string name_;
  Ref<ThreadPool> pool_;
  // Intrusive links in the list of live task processors.
  TaskProcessor* prev_ PLEXUS_GUARDED_BY(RegistryMutex()) = nullptr;
  TaskProcessor* next_live_ PLEXUS_GUARDED_BY(RegistryMutex()) = nullptr;
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> discarded_{0};
  const bool discard_on_release_;

  // --- The running turn's end: written by every task it runs.
  const std::uint32_t batch_limit_;
  // Tasks taken off the queue to run, or discarded by a shutdown. Written (a plain store) by
  // whoever owns draining_: the running turn's thread, or, while no turn is scheduled, the
  // holder of mu_.
  std::atomic<std::uint64_t> taken_{0};
  // Read by every task the turn runs, rarely written; with taken_, which a push reads when it
  // reads this, in one 16-byte block (one cache line).
  std::atomic<bool> alerted_{false};
  std::atomic<bool> executing_{false};
  // Owned by the running turn: whether the last wait for more pushes at a turn's end paid off.
  bool poll_paid_ = false;
  std::atomic<std::uint32_t> suspended_{0};  // read by every task the turn runs
  std::uint32_t next_ = 0;                   // owned by the running turn: next task of draining_
  std::atomic<std::uint64_t> processed_{0};
  std::atomic<std::int64_t> busy_ns_{0};
  // Owned by the running turn only (a turn runs on one thread at a time); touched under mu_
  // by others only while no turn is scheduled.
  std::vector<Task> draining_;
};

}  // namespace plexus
