// -----------------------------------------------------------------------------
// plexus/exec/thread_pool.h
// -----------------------------------------------------------------------------
//
// ThreadPool is an elastic pool of worker threads: Asterisk's threadpool (main/threadpool.c)
// with its options and its listener, and the engine under plexus's task processors
// (task_processor.h), which share a pool M:N. Its scheduler follows the work-stealing runtimes
// (Tokio, Go): a global FIFO queue takes pushes, and each worker has a "run next" slot and a
// run queue of its own, which task processors made ready by a task use, so that a
// hand-off between serializers runs on the same thread without waking another; idle workers
// steal from the others' run queues.
//
//   * Size: an initial size, a minimum, a maximum; `auto_increment` threads are added when a
//     push finds no idle thread; an idle thread exits after `idle_timeout` (never below the
//     minimum); SetSize resizes at run time. Shrinking stops idle threads first; threads
//     that are running a task finish it, then exit ("zombies", no longer counted as active).
//   * Observer: told of every push (and whether the queue was empty), of the queue emptying
//     (a worker took the last task), and of every change of the (active, idle) counts. A pool
//     with an observer keeps every task in its global queue, so that the notices are exact.
//   * Shutdown runs what is queued (if the pool has threads), stops and joins every worker.
//
// Example:
//
//   auto pool = plexus::ThreadPool::Create({.name = "media", .initial_size = 4});
//   pool->Push([] { MixConference(); });
//
// Thread safety: thread-safe. Every member may be called from any thread, including from the
// pool's own tasks, except Shutdown (and dropping the last reference), which joins the
// workers and is refused from a worker of the same pool.
//
// Blocked workers: a worker that blocks in TaskProcessor::PushAndWait or Shutdown is waiting
// for work that may need a thread of this very pool. While every running worker is blocked so
// and work is queued with no idle thread to take it, the pool lends itself one more thread
// (above max_size); the loan ends, and one thread leaves, when a blocked worker resumes.
//
// The run-next slot belongs to its worker: a task processor made ready by a task normally
// waits for that task to return. A task that then blocks (other than in
// TaskProcessor::PushAndWait or Shutdown, which hand the slot to the other workers first) on
// work handed off so -- a future, a CondVar -- delays it only until an idle worker sees that
// the slot's owner has not moved on for a while (a fraction of a millisecond) and takes the
// slot over. A pool of one thread that cannot grow has no other worker to do so: there, as
// with any pool whose every thread waits, a task that waits for work queued behind itself
// waits forever.
//
// Observer contract: callbacks are made with the pool's lock held, so they arrive in the
// order the state changed; they must be quick and must not call back into the pool.

#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "plexus/core/config.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/exec/task.h"
#include "plexus/sync/cond_var.h"
#include "plexus/sync/mutex.h"

namespace plexus {

namespace bus_internal {
class SubscriptionCore;
}  // namespace bus_internal

// Receives a pool's notifications (see the contract above). The default implementations
// ignore them.
class ThreadPoolObserver {
 public:
  virtual ~ThreadPoolObserver() = default;
  virtual void OnTaskPushed(bool queue_was_empty) { (void)queue_was_empty; }
  virtual void OnQueueEmptied() {}
  virtual void OnStateChanged(std::size_t active, std::size_t idle) {
    (void)active;
    (void)idle;
  }
};

struct ThreadPoolOptions {
  std::string name = "pool";
  std::size_t initial_size = 0;
  std::size_t min_size = 0;  // the idle timeout never shrinks the pool below this
  std::size_t max_size = 0;  // the most auto-increment may grow to; 0: no limit
  // Threads added when a push finds no idle thread (0: the pool never grows by itself).
  std::size_t auto_increment = 0;
  // How long a thread stays idle before it exits; zero: forever.
  std::chrono::milliseconds idle_timeout{0};
  // Not owned; must outlive the pool.
  ThreadPoolObserver* observer = nullptr;
  // Run on each worker thread when it starts and before it exits. thread_end runs once the
  // thread has left the pool: what it pushes to the pool queues as from any other thread.
  std::function<void()> thread_start;
  std::function<void()> thread_end;
};

class ThreadPool final : public RefCounted {
 public:
  static Ref<ThreadPool> Create(ThreadPoolOptions options = {},
                                SourceLocation where = SourceLocation::current());

  // The process-wide pool that task processors use unless told otherwise: one thread per
  // hardware thread (at least two), created on first use, never shut down.
  static ThreadPool& Shared();

  // Queues `task`. Returns false, after a misuse report, for an empty task or a pool that
  // was shut down; the task is then destroyed without running.
  bool Push(Task task, SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(mu_);

  // Resizes to `threads` (negative is misuse). Growing starts threads at once; shrinking
  // stops idle threads first, then lets running ones finish their task and exit.
  void SetSize(int threads, SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(mu_);

  // Runs what is queued (discards it, with a log line, if the pool has no thread left to run
  // it), then stops and joins every worker. Later pushes are refused. Idempotent.
  void Shutdown(SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(mu_);
  bool IsShutDown() const PLEXUS_EXCLUDES(mu_);

  // Snapshots.
  std::size_t ActiveCount() const PLEXUS_EXCLUDES(mu_);
  std::size_t IdleCount() const PLEXUS_EXCLUDES(mu_);
  std::size_t QueueSize() const PLEXUS_EXCLUDES(mu_);
  // Whether tasks wait for a thread: in the global queue, in a worker's run queue, or (called
  // from a worker) in the caller's own run-next slot. A lock-free hint (it may be stale), for a
  // task deciding whether to keep its thread a little longer.
  bool HasQueuedWork() const noexcept;
  // Whether the calling thread is one of this pool's workers.
  bool IsWorkerThread() const noexcept;
  const std::string& Name() const noexcept { return options_.name; }

 private:
  struct Worker;
  // The serializers of the library: both hand a turn made ready by a running task to that
  // task's worker (PushRunNext).
  friend class TaskProcessor;
  friend class bus_internal::SubscriptionCore;

  // Marks the calling worker (of any pool; nothing on other threads) as blocked for its
  // lifetime, so that its pool lends itself a thread when every running worker is blocked.
  // The worker's own run queue and run-next slot go to the global queue first: what it waits
  // for may be there.
  class ScopedBlockingWait {
   public:
    ScopedBlockingWait();
    ~ScopedBlockingWait();
    ScopedBlockingWait(const ScopedBlockingWait&) = delete;
    ScopedBlockingWait& operator=(const ScopedBlockingWait&) = delete;

   private:
    ThreadPool* pool_;
  };

  ThreadPool(ThreadPoolOptions options, SourceLocation where);
  ~ThreadPool() override;
  void LastReferenceDropped() const override;

  // For a serializer (a task processor, a bus subscription) made ready by the running task:
  // called on a worker of this pool (not
  // blocked, the pool without an observer, and, in a pool that may grow, some worker idle),
  // `task` takes the worker's run-next slot and runs when the current task returns (or, should
  // that task look stuck, on an idle worker that rescues it), waking no one unless every
  // sleeper sleeps without watching the slots; a task it displaces goes to the worker's run
  // queue, where idle workers may steal it. Anywhere else it is Push.
  bool PushRunNext(Task task) PLEXUS_EXCLUDES(mu_);

  void WorkerMain(Worker* self) PLEXUS_EXCLUDES(mu_);
  // The next task for `self`: its run-next slot, its run queue, the global queue (first, every
  // so often), or one stolen from another worker's run queue.
  bool TakeWork(Worker* self, Task& out) PLEXUS_EXCLUDES(mu_);
  bool TakeOwn(Worker* self, Task& out) PLEXUS_EXCLUDES(mu_);
  bool TakeGlobal(Task& out) PLEXUS_EXCLUDES(mu_);
  // Takes the oldest task of another worker's run queue, scanning the workers from a place of
  // its own (without the pool's lock; each victim's queue under the victim's own lock).
  bool Steal(Worker* self, Task& out) PLEXUS_EXCLUDES(mu_);
  // Takes over the run-next slot of a worker that `self` saw stuck in one task (its slot full
  // and its take count unchanged for kRescueAfterNs). Without the pool's lock.
  bool Rescue(Worker* self, Task& out) PLEXUS_EXCLUDES(mu_);
  // Called by an idle worker about to sleep, already counted in blind_sleepers_, without the
  // pool's lock: notes the full run-next slots of the others. Returns whether it must sleep
  // with a bounded wait to come back for them (it then counts as a watcher, not blind).
  bool WatchSlots(Worker* self) PLEXUS_EXCLUDES(mu_);
  // Whether some other worker's run-next slot is full (a look without the pool's lock).
  bool AnySlotFull(const Worker* self) const noexcept;
  // Called by a worker that just filled its run-next slot: wakes a sleeper when every idle
  // worker sleeps without watching the slots.
  void WakeForSlot() PLEXUS_EXCLUDES(mu_);
  // For a full slot that a blind sleeper may have missed: tells a worker between its look at
  // the slots and its sleep to look again (slot_alerts_), and says whether to wake a sleeper.
  bool AlertBlindLocked() PLEXUS_REQUIRES(mu_);
  // Stops `self` counting as a slot watcher (the worker's own thread only).
  void StopWatching(Worker* self) noexcept;
  // A Worker for a new thread: one whose thread left (recycled), or a new one, published in
  // the table of workers.
  Worker* AcquireWorkerLocked() PLEXUS_REQUIRES(mu_);
  // Moves a worker's run-next slot and run queue to the global queue.
  void FlushLocalLocked(Worker* worker) PLEXUS_REQUIRES(mu_);
  // Whether a sleeper should be woken for new work: none is spinning and a sleeper has no
  // wake-up on its way; counts the wake-up when it says yes.
  bool ShouldWakeLocked() PLEXUS_REQUIRES(mu_);
  // Wakes a sleeper for stealable work pushed without the lock, unless a spinner will find it.
  void WakeForLocalWork() PLEXUS_EXCLUDES(mu_);
  // Whether `sleepers` (a count read without the lock) all have a wake-up coming already.
  bool EveryWakeupPending(std::size_t sleepers) const noexcept;
  void StartThreadsLocked(std::size_t n) PLEXUS_REQUIRES(mu_);
  void NotifyStateLocked() PLEXUS_REQUIRES(mu_);
  bool PopLocked(Task& out) PLEXUS_REQUIRES(mu_);
  void PushLocked(Task&& task) PLEXUS_REQUIRES(mu_);
  std::size_t LiveThreadsLocked() const PLEXUS_REQUIRES(mu_);
  std::vector<std::thread> TakeFinishedLocked() PLEXUS_REQUIRES(mu_);
  // Lends a thread when blocked workers are all that runs and queued work has no thread.
  void MaybeLendLocked() PLEXUS_REQUIRES(mu_);
  // Asks one thread to leave: an idle one if any, else the next to finish its task.
  void ShrinkByOneLocked() PLEXUS_REQUIRES(mu_);
  void SetStopActiveLocked(std::size_t n) PLEXUS_REQUIRES(mu_);

  const ThreadPoolOptions options_;
  const SourceLocation created_at_;

  // Validated: observer callbacks run under it, and may take locks of their own. Taken by
  // pushes from outside the pool and by workers that go idle or take from the global queue; a
  // worker that runs tasks from its own run queue, steals or rescues does not take it, and
  // nothing that reads every worker runs under it.
  mutable Mutex mu_;
  CondVar work_cv_;
  // Ring buffer of globally queued tasks (capacity a power of two); steady-state pushes
  // allocate nothing.
  std::vector<Task> ring_ PLEXUS_GUARDED_BY(mu_);
  std::size_t head_ PLEXUS_GUARDED_BY(mu_) = 0;
  std::size_t count_ PLEXUS_GUARDED_BY(mu_) = 0;
  // count_, readable without the lock by workers looking for work.
  std::atomic<std::size_t> queued_hint_{0};
  // Tasks in the workers' run queues (not their run-next slots): what an idle worker may
  // steal. Changed under the owning worker's lock, by every worker whose run-next slot
  // overflows: on a line of its own, so that those writes do not take away the line of hints
  // below, which every hand-off reads.
  alignas(kCacheLineSize) std::atomic<std::size_t> local_queued_{0};
  // Workers spinning for work before they sleep; a push does not wake a sleeper while one
  // spins (it will find the work). The hints from here on change when workers go to sleep or
  // wake, rarely per hand-off.
  alignas(kCacheLineSize) std::atomic<std::size_t> spinning_{0};
  // Idle workers blocked on work_cv_ (changed under mu_, read without it by pushes to a run
  // queue).
  std::atomic<std::size_t> sleepers_{0};
  // Sleepers that did not see a full run-next slot and sleep without a bound ("blind"), and
  // idle workers that sleep with a bound to come back for a full slot ("watchers"). A worker
  // that fills its slot while some sleep blind and none watches wakes one (see the file
  // comment of thread_pool.cc).
  std::atomic<std::size_t> blind_sleepers_{0};
  std::atomic<std::size_t> slot_watchers_{0};
  // idle_ - stop_idle_, readable without the lock: a pool that may grow keeps a hand-off in
  // the run-next slot only while some worker is idle (one that will watch the slot).
  std::atomic<std::size_t> idle_hint_{0};
  // stop_active_, readable without the lock by a worker after each task.
  std::atomic<std::size_t> stop_active_hint_{0};
  std::size_t active_ PLEXUS_GUARDED_BY(mu_) = 0;
  std::size_t idle_ PLEXUS_GUARDED_BY(mu_) = 0;
  // NotifyOne calls not yet consumed by a sleeper.
  std::size_t wakeups_pending_ PLEXUS_GUARDED_BY(mu_) = 0;
  // wakeups_pending_, readable without the lock: a worker that fills its run-next slot or
  // run queue while every sleeper has a wake-up coming need not take mu_ to learn that it
  // has nobody to wake. On a loaded machine a woken worker may wait milliseconds for a CPU,
  // still counted as a sleeper, and the pool's lock was taken at every hand-off meanwhile.
  std::atomic<std::size_t> wakeups_pending_hint_{0};
  std::size_t stop_idle_ PLEXUS_GUARDED_BY(mu_) = 0;    // idle workers asked to exit
  std::size_t stop_active_ PLEXUS_GUARDED_BY(mu_) = 0;  // active ones asked to exit after it
  std::size_t zombies_ PLEXUS_GUARDED_BY(mu_) = 0;      // active workers that exit after their task
  std::size_t blocked_ PLEXUS_GUARDED_BY(mu_) = 0;      // workers in a ScopedBlockingWait
  // Threads started for blocked workers, not yet given back.
  std::size_t loans_ PLEXUS_GUARDED_BY(mu_) = 0;
  bool shutting_down_ PLEXUS_GUARDED_BY(mu_) = false;
  // Bumped under mu_ by a worker that filled a run-next slot (or saw one full) while some
  // sleeper was blind; a worker that looked at the slots without the lock compares it before
  // it sleeps (see the file comment of thread_pool.cc).
  std::uint64_t slot_alerts_ PLEXUS_GUARDED_BY(mu_) = 0;
  // Threads started and not yet left.
  std::size_t running_ PLEXUS_GUARDED_BY(mu_) = 0;
  // Every Worker object the pool made, readable without mu_ (thieves, watchers): a table of
  // pointers whose entries, once published, never change. A Worker outlives its thread: it
  // goes to free_workers_ and serves the next thread started, and is freed with the pool, so
  // a stale pointer always reads a live object (see the file comment of thread_pool.cc).
  struct WorkerTable;
  std::atomic<WorkerTable*> worker_table_{nullptr};
  // Entries of the table published so far (release; read with acquire before the table).
  std::atomic<std::size_t> worker_count_{0};
  // Every table made (a full one is replaced by one twice its size; the old ones stay, since
  // a thief may be reading them), freed with the pool.
  std::vector<WorkerTable*> worker_tables_ PLEXUS_GUARDED_BY(mu_);
  // Workers whose thread left, linked through Worker::next_free.
  Worker* free_workers_ PLEXUS_GUARDED_BY(mu_) = nullptr;
  // Exited workers, joined by the next control call.
  std::vector<std::thread> finished_ PLEXUS_GUARDED_BY(mu_);
};

}  // namespace plexus
