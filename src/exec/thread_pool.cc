// ThreadPool: a global mutex-guarded ring buffer of tasks, a run-next slot and a run queue per
// worker, workers that spin for a while (when spinning has paid off lately) and then sleep on
// one condition variable, and bookkeeping of (active, idle) that follows Asterisk's
// threadpool: a thread is idle while it waits for work and active while it runs tasks;
// shrinking stops idle threads first, then turns active ones into zombies that exit after
// their task.
//
// Where a task goes:
//   * Push (from anywhere) appends to the global queue under mu_.
//   * PushRunNext from a worker (a task processor made ready by the running task) puts the
//     task in the worker's run-next slot: it runs when the current task returns, on the same
//     thread, with its caches warm, and nobody is woken for it (but see "Rescuing" below for
//     the one case where a sleeper is). A task it displaces moves to
//     the worker's run queue, which other workers may steal from.
//
// Rescuing a run-next slot: a task may hand off work and then wait for it (a future, a
// CondVar). Only its own worker takes the slot in the normal course, so someone else must
// notice. The slot has a state word (empty, full, claimed by a thief); the owner fills it with
// a plain store (it alone goes from empty to full) and takes it with one uncontended
// compare-and-swap on its own cache line, so a thief can claim it (full -> claimed) without a
// lock. A thief only claims the slot of a worker that looks stuck in one task: an idle worker
// about to sleep notes every full slot with its owner's take count (`ticks`, bumped by the
// owner at each take) and sleeps for at most kRescueAfterNs; a slot still full whose owner has
// not taken anything since is taken over. For this to happen someone must be watching: a
// worker that fills its slot wakes a sleeper when some sleep "blind" (they saw no full slot)
// and none watches and none spins. The fill (sequentially consistent) and the sleeper's
// count-then-look at the slots (blind_sleepers_ then the slots, both sequentially consistent)
// make this the same Dekker handshake as for the run queues. A watcher keeps watching while
// the pool is busy (some take count moved), so that steady hand-offs between serializers wake
// no one beyond one bounded sleeper's periodic look.
// A worker takes, in order: its run-next slot (at most kMaxNextStreak times in a row, so that
// two serializers handing work to each other cannot starve its run queue), its run queue, the
// global queue, and finally work stolen from another worker's run queue; every
// kGlobalCheckInterval-th take looks at the global queue first, so that a worker fed by its own
// hand-offs cannot starve pushes from outside.
//
// Reading the workers without the lock: mu_ guards the global queue, which every push from
// outside the pool takes, so nothing that reads every worker runs under it. The pool keeps a
// table of every Worker object it made (WorkerTable: pointers published once, never changed;
// a full table is replaced by one twice its size and the old one kept, since a reader may
// still hold it), and a Worker outlives its thread: a leaving thread puts it on a free list
// (its slot and run queue are empty then) and the next thread started takes it, bumping its
// generation. Workers are freed with the pool. So a thief or a watcher reads a live object
// through any pointer it ever saw, without the pool's lock: a retired Worker shows an empty
// queue and slot, a recycled one the new thread's, guarded as ever by the Worker's own lock
// and slot state word; a watch notes the generation, so that a rescue never takes a new
// thread's slot for the one it watched. (The other way, a snapshot republished at every
// start and exit, allocates under the lock at every change of the pool's size, and needs the
// readers to pin the snapshot; the number of Worker objects here is the most threads the
// pool ever ran at once.) Stealing then takes no pool lock: a thief scans the table from a
// place of its own (a per-worker random start, as Go's scheduler does, so that thieves spread
// over the victims) and takes the oldest task of a run queue under that worker's lock, which
// keeps local_queued_ exact as before. A rescue reads only the thief's own watches and the
// victim's atomics.
//
// Watching without the lock: a worker about to sleep counts itself blind (under mu_), notes
// slot_alerts_, releases mu_, looks at the slots, and takes mu_ again to count itself a
// sleeper and wait. Before, mu_ was held from the blind count to the wait, so a filler that
// saw it blind and took mu_ to wake someone always found it among the sleepers. Now it may
// find it between its look and its sleep, not yet a sleeper: so such a filler (and a worker
// that stops watching and sees a full slot) bumps slot_alerts_ under mu_, and a blind worker
// that finds it moved looks again instead of sleeping. The filler's section comes after the
// blind count (it read that count), so either the sleeper sees the bump, or it was already
// waiting and counted when the filler asked ShouldWakeLocked. Likewise a push, a shrink or a
// shutdown that came during the look finds no sleeper to wake, so the worker checks the
// global queue, stop_idle_ and shutting_down_ again after it takes mu_ back.
//
// Wake-ups (after Go's scheduler): a sleeper is woken only for work that another thread could
// take (the global queue, a run queue) and only when no worker is spinning, since a spinner
// will find it; a worker that takes from the global queue and leaves work behind wakes the
// next one the same way. A worker about to sleep first counts itself in sleepers_ and then
// looks at the run queues again (both sequentially consistent), while a push to a run queue
// first counts the task and then looks at sleepers_ and spinning_: one of the two sees the
// other, so no wake-up is lost.
//
// Idle policy: a wake-up costs the waker a futex call and the sleeper tens of microseconds on a
// virtual machine whose idle vCPU halted; spinning costs a core, and on a machine with few
// cores it slows the very thread that would push. So a worker spins (for at most
// kSpinBudgetNs, and only if no other worker spins) only when spinning has paid off lately:
// its last spin found work, or its last sleep was shorter than the spin budget. A worker of a
// pool that sits idle between sparse pushes sleeps at once and is woken at once.

#include "plexus/exec/thread_pool.h"

#include <algorithm>
#include <string>

#include "plexus/core/clock.h"
#include "plexus/core/internal/cpu_relax.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"

namespace plexus {

namespace {

thread_local ThreadPool* tls_worker_of = nullptr;
// The calling thread's ThreadPool::Worker (a private type, hence void*).
thread_local void* tls_worker = nullptr;

// How long an idle worker spins for work before it sleeps, when it spins at all.
constexpr std::int64_t kSpinBudgetNs = 20'000;
// Pauses between two reads of the clock while spinning.
constexpr int kPausesPerClockRead = 32;
// Takes from the run-next slot in a row before the run queue gets a turn.
constexpr std::uint32_t kMaxNextStreak = 16;
// Every this many takes, a worker looks at the global queue before its own.
constexpr std::uint32_t kGlobalCheckInterval = 61;
// How long a worker's take count must stand still, its run-next slot full, before an idle
// worker takes the slot over. Long against a hand-off (a task that hands off work and
// returns takes it back in well under a microsecond), so that the slot stays on its worker in
// the common case even on a loaded machine; short against what a caller notices, since that
// is how long a task that blocks on work it handed off waits for it; and long enough that a
// watching idle worker's periodic look costs next to nothing.
constexpr std::int64_t kRescueAfterNs = 200'000;
// Run-next slot states.
constexpr std::uint32_t kSlotEmpty = 0;
constexpr std::uint32_t kSlotFull = 1;
constexpr std::uint32_t kSlotClaimed = 2;  // a thief is moving the task out

using core_internal::CpuRelax;

// A FIFO ring buffer of tasks whose capacity doubles when full; no locking of its own.
class TaskRing {
 public:
  std::size_t Size() const noexcept { return count_; }

  void PushBack(Task&& task) {
    if (count_ == buffer_.size()) Grow();
    buffer_[(head_ + count_) & (buffer_.size() - 1)] = std::move(task);
    ++count_;
  }

  bool PopFront(Task& out) {
    if (count_ == 0) return false;
    out = std::move(buffer_[head_]);
    head_ = (head_ + 1) & (buffer_.size() - 1);
    --count_;
    return true;
  }

 private:
  void Grow() {
    std::vector<Task> bigger(buffer_.empty() ? 16 : buffer_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) {
      bigger[i] = std::move(buffer_[(head_ + i) & (buffer_.size() - 1)]);
    }
    buffer_.swap(bigger);
    head_ = 0;
  }

  std::vector<Task> buffer_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
};

}  // namespace

struct ThreadPool::Worker {
  std::thread thread;
  // The Worker's place in the table of workers, for its whole life.
  std::size_t index = 0;
  // Bumped (under the pool's mu_) each time the Worker is handed to a new thread; a watch
  // notes it, so that a rescue never takes a new thread's slot for the one it watched.
  std::atomic<std::uint32_t> generation{0};
  // The next Worker in the pool's free list (under the pool's mu_, while the Worker is in it).
  Worker* next_free = nullptr;
  // The run-next slot. `next_state` says who may touch `next`: the owner fills it only from
  // kSlotEmpty (plain store of kSlotFull after the move) and takes it by kSlotFull ->
  // kSlotEmpty; a thief claims it by kSlotFull -> kSlotClaimed, moves the task out and stores
  // kSlotEmpty.
  Task next;
  std::atomic<std::uint32_t> next_state{kSlotEmpty};
  // Takes so far: written by the owner only (plain stores), read by watchers.
  std::atomic<std::uint32_t> ticks{0};
  // A leaf lock over the run queue: the owner and thieves take it to push and pop (thieves
  // without the pool's mu_; the owner's flush to the global queue with it). Uncontended
  // unless someone steals.
  sync_internal::AnnotatedMutex mu;
  TaskRing queue PLEXUS_GUARDED_BY(mu);
  // queue.Size(), changed under mu; only the owner adds, so a zero it reads without the lock
  // is exact.
  std::atomic<std::size_t> queued{0};
  // Owned by the worker's thread.
  std::uint32_t next_streak = 0;
  // Where this worker's next steal starts its scan (a xorshift state), so that thieves spread
  // over the victims instead of all trying the first one.
  std::uint32_t steal_seed = 1;
  // Slots this worker watches (its own thread only, without the pool's lock): whose, that
  // Worker's generation, the owner's take count then, and since when it has not moved; in
  // table order. `watched_before` is the previous look's list, kept to reuse its capacity.
  struct Watch {
    Worker* victim;
    std::uint32_t generation;
    std::uint32_t ticks;
    std::int64_t since;
  };
  std::vector<Watch> watched;
  std::vector<Watch> watched_before;
  std::uint32_t ticks_sum = 0;  // the others' take counts at the last look
  bool watching = false;        // counted in slot_watchers_
  std::uint32_t blocking = 0;   // nested ScopedBlockingWaits on this worker
  bool spin_pays = true;        // the idle policy's memory (see above)
};

// The table of workers: `capacity` pointers, each published once (release) and then never
// changed. A full table is replaced by one twice its size holding the same pointers; readers
// that still hold the old one read a prefix of the workers, which is all they could have seen.
struct ThreadPool::WorkerTable {
  explicit WorkerTable(std::size_t n) : capacity(n), slots(new std::atomic<Worker*>[n]()) {}
  const std::size_t capacity;
  const std::unique_ptr<std::atomic<Worker*>[]> slots;
};

Ref<ThreadPool> ThreadPool::Create(ThreadPoolOptions options, SourceLocation where) {
  return Ref<ThreadPool>::Adopt(new ThreadPool(std::move(options), where), where);
}

ThreadPool& ThreadPool::Shared() {
  // Never destroyed: task processors may be used until the very end of the process, and its
  // idle workers simply end with it.
  static ThreadPool* const shared = [] {
    const std::size_t n = std::max(2u, std::thread::hardware_concurrency());
    return new ThreadPool(ThreadPoolOptions{.name = "plexus-shared", .initial_size = n},
                          SourceLocation::current());
  }();
  return *shared;
}

ThreadPool::ThreadPool(ThreadPoolOptions options, SourceLocation where)
    : options_(std::move(options)), created_at_(where) {
  ring_.resize(64);
  MutexLock lock(mu_);
  StartThreadsLocked(options_.initial_size);
}

ThreadPool::~ThreadPool() {
  // Shutdown joined every thread: nobody reads the table or a Worker any more.
  MutexLock lock(mu_);
  WorkerTable* table = worker_table_.load(std::memory_order_relaxed);
  const std::size_t n = worker_count_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < n; ++i) delete table->slots[i].load(std::memory_order_relaxed);
  for (WorkerTable* t : worker_tables_) delete t;
}

void ThreadPool::LastReferenceDropped() const {
  auto* self = const_cast<ThreadPool*>(this);
  if (self->IsWorkerThread()) {
    // A worker cannot join itself: hand the shutdown to a thread of its own.
    std::thread([self] {
      self->Shutdown();
      delete self;
    }).detach();
    return;
  }
  self->Shutdown();
  delete self;
}

// -----------------------------------------------------------------------------
// The global queue
// -----------------------------------------------------------------------------

void ThreadPool::PushLocked(Task&& task) {
  if (count_ == ring_.size()) {
    // Grow by unrolling the ring into a buffer twice its size.
    std::vector<Task> bigger(ring_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i) {
      bigger[i] = std::move(ring_[(head_ + i) & (ring_.size() - 1)]);
    }
    ring_.swap(bigger);
    head_ = 0;
  }
  ring_[(head_ + count_) & (ring_.size() - 1)] = std::move(task);
  ++count_;
  queued_hint_.store(count_, std::memory_order_seq_cst);
}

bool ThreadPool::PopLocked(Task& out) {
  if (count_ == 0) return false;
  out = std::move(ring_[head_]);
  head_ = (head_ + 1) & (ring_.size() - 1);
  --count_;
  queued_hint_.store(count_, std::memory_order_relaxed);
  if (count_ == 0 && options_.observer != nullptr) options_.observer->OnQueueEmptied();
  return true;
}

bool ThreadPool::ShouldWakeLocked() {
  if (spinning_.load(std::memory_order_seq_cst) != 0) return false;
  if (sleepers_.load(std::memory_order_relaxed) <= wakeups_pending_) return false;
  ++wakeups_pending_;
  wakeups_pending_hint_.store(wakeups_pending_, std::memory_order_seq_cst);
  return true;
}

bool ThreadPool::Push(Task task, SourceLocation where) {
  if (!task) {
    ReportMisuse("ThreadPool::Push of an empty task", where);
    return false;
  }
  bool wake = false;
  bool refused = false;
  {
    MutexLock lock(mu_);
    if (shutting_down_) {
      refused = true;  // reported below, without the lock (the misuse action may throw)
    } else {
      const bool was_empty = count_ == 0;
      PushLocked(std::move(task));
      if (options_.observer != nullptr) options_.observer->OnTaskPushed(was_empty);
      wake = ShouldWakeLocked();
      if (!wake && idle_ == 0 && options_.auto_increment > 0) {
        const std::size_t live = LiveThreadsLocked();
        std::size_t grow = options_.auto_increment;
        if (options_.max_size != 0) {
          grow = std::min(grow, options_.max_size - std::min(live, options_.max_size));
        }
        StartThreadsLocked(grow);
      }
      MaybeLendLocked();
    }
  }
  if (refused) {
    ReportMisuse("ThreadPool::Push to pool '" + options_.name + "', which was shut down", where);
    return false;
  }
  if (wake) work_cv_.NotifyOne();
  return true;
}

// -----------------------------------------------------------------------------
// The workers' own queues
// -----------------------------------------------------------------------------

bool ThreadPool::PushRunNext(Task task) {
  auto* self = static_cast<Worker*>(tls_worker);
  if (tls_worker_of != this || self->blocking != 0 || options_.observer != nullptr || !task) {
    return Push(std::move(task));
  }
  // A pool that may grow starts a thread for a push that finds none idle; a hand-off kept in
  // the slot of a worker that then blocks would have no one to rescue it (every other worker
  // may be stuck too), so such a pool keeps it only while some worker is idle, and otherwise
  // pushes it as Push would, growing the pool. A relaxed read: a stale count only moves the
  // hand-off to the global queue, or keeps it where the idle worker just went busy (it looks
  // again when it next goes idle).
  if (options_.auto_increment > 0 && idle_hint_.load(std::memory_order_relaxed) == 0) {
    return Push(std::move(task));
  }
  // A worker of this pool runs this task; it empties its own slot and queue before it may
  // leave, so a shutdown that began meanwhile still runs it.
  std::uint32_t state = self->next_state.load(std::memory_order_acquire);
  if (state == kSlotEmpty) {
    self->next = std::move(task);
    // Sequentially consistent against a sleeper's count-then-look (see the file comment).
    self->next_state.store(kSlotFull, std::memory_order_seq_cst);
    WakeForSlot();
    return true;
  }
  Task displaced;
  if (state == kSlotFull &&
      self->next_state.compare_exchange_strong(state, kSlotEmpty, std::memory_order_acq_rel,
                                               std::memory_order_relaxed)) {
    // The newest hand-off runs next; the one it displaces may be stolen.
    displaced = std::move(self->next);
    self->next = std::move(task);
    self->next_state.store(kSlotFull, std::memory_order_seq_cst);
  } else {
    displaced = std::move(task);  // a thief is emptying the slot
  }
  {
    MutexLock lock(self->mu);
    self->queue.PushBack(std::move(displaced));
    self->queued.store(self->queue.Size(), std::memory_order_relaxed);
    local_queued_.fetch_add(1, std::memory_order_seq_cst);
  }
  WakeForLocalWork();
  return true;
}

void ThreadPool::WakeForSlot() {
  // One who spins or watches will look at the slot; one who sleeps blind must be woken.
  const std::size_t blind = blind_sleepers_.load(std::memory_order_seq_cst);
  if (blind == 0) return;
  if (slot_watchers_.load(std::memory_order_seq_cst) != 0) return;
  if (spinning_.load(std::memory_order_seq_cst) != 0) return;
  // A worker about to sleep counts itself blind before it looks at the slots, but a sleeper
  // only after: one that looked before our fill may be missing from sleepers_ yet, never
  // from `blind`.
  if (EveryWakeupPending(std::max(blind, sleepers_.load(std::memory_order_seq_cst)))) return;
  bool wake = false;
  {
    MutexLock lock(mu_);
    wake = AlertBlindLocked();
  }
  if (wake) work_cv_.NotifyOne();
}

bool ThreadPool::AlertBlindLocked() {
  // A worker counted blind may not sleep yet: it looks at the slots without the lock and
  // only then takes it to count itself a sleeper, so ShouldWakeLocked may not count it. It
  // compares slot_alerts_ under the lock before it sleeps, and looks again if it moved.
  ++slot_alerts_;
  return ShouldWakeLocked();
}

bool ThreadPool::EveryWakeupPending(std::size_t sleepers) const noexcept {
  // What ShouldWakeLocked would answer "no" for, read without the lock (the pending count
  // last). A stale pending count is one whose wake-up a sleeper consumed since: that sleeper
  // lowered the count before it counts itself a sleeper (or blind) again and looks at the
  // slots and run queues, all sequentially consistent, so it comes after our fill in that
  // order and sees it. An unconsumed one belongs to a worker that will look likewise.
  return sleepers <= wakeups_pending_hint_.load(std::memory_order_seq_cst);
}

void ThreadPool::WakeForLocalWork() {
  // Sequentially consistent against a sleeper's count-then-look (see the file comment).
  if (spinning_.load(std::memory_order_seq_cst) != 0) return;
  const std::size_t sleepers = sleepers_.load(std::memory_order_seq_cst);
  if (sleepers == 0) return;
  if (EveryWakeupPending(sleepers)) return;
  bool wake = false;
  {
    MutexLock lock(mu_);
    wake = ShouldWakeLocked();
  }
  if (wake) work_cv_.NotifyOne();
}

bool ThreadPool::TakeOwn(Worker* self, Task& out) {
  const auto take_next = [&] {
    // Only the owner stores kSlotFull, so a relaxed kSlotEmpty read is exact; a stale
    // kSlotFull makes the exchange fail.
    if (self->next_state.load(std::memory_order_relaxed) != kSlotFull) return false;
    std::uint32_t full = kSlotFull;
    if (!self->next_state.compare_exchange_strong(full, kSlotEmpty, std::memory_order_acq_rel,
                                                  std::memory_order_relaxed)) {
      return false;  // rescued by another worker
    }
    out = std::move(self->next);
    self->next.Reset();
    ++self->next_streak;
    return true;
  };
  if ((self->next_streak < kMaxNextStreak || self->queued.load(std::memory_order_relaxed) == 0) &&
      take_next()) {
    return true;
  }
  if (self->queued.load(std::memory_order_relaxed) != 0) {
    MutexLock lock(self->mu);
    if (self->queue.PopFront(out)) {
      self->queued.store(self->queue.Size(), std::memory_order_relaxed);
      local_queued_.fetch_sub(1, std::memory_order_relaxed);
      self->next_streak = 0;
      return true;
    }
  }
  // Thieves emptied the queue meanwhile.
  return take_next();
}

bool ThreadPool::TakeGlobal(Task& out) {
  if (queued_hint_.load(std::memory_order_relaxed) == 0) return false;
  bool wake = false;
  {
    MutexLock lock(mu_);
    if (!PopLocked(out)) return false;
    // Work left behind: hand it to a sleeper unless a spinner will take it.
    if (count_ != 0) wake = ShouldWakeLocked();
  }
  if (wake) work_cv_.NotifyOne();
  return true;
}

bool ThreadPool::Steal(Worker* self, Task& out) {
  // The count first: its acquire makes the table we load next hold at least that many.
  const std::size_t n = worker_count_.load(std::memory_order_acquire);
  if (n < 2) return false;
  WorkerTable* table = worker_table_.load(std::memory_order_acquire);
  std::uint32_t x = self->steal_seed;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  self->steal_seed = x;
  std::size_t i = x % n;
  for (std::size_t k = 0; k < n; ++k, i = i + 1 == n ? 0 : i + 1) {
    Worker* victim = table->slots[i].load(std::memory_order_acquire);
    if (victim == self || victim->queued.load(std::memory_order_relaxed) == 0) continue;
    // A victim whose thread left (or a Worker recycled since) is a live object: its queue is
    // empty, or belongs to the thread that has it now; either way its own lock guards it.
    MutexLock lock(victim->mu);
    // The oldest task of the victim's run queue.
    if (!victim->queue.PopFront(out)) continue;
    victim->queued.store(victim->queue.Size(), std::memory_order_relaxed);
    local_queued_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

bool ThreadPool::Rescue(Worker* self, Task& out) {
  const std::int64_t now = MonotonicNanos();
  for (const Worker::Watch& watch : self->watched) {
    if (now - watch.since < kRescueAfterNs) continue;
    Worker* victim = watch.victim;
    // Its thread left since, and the Worker may serve another thread: not the slot we saw.
    if (victim->generation.load(std::memory_order_relaxed) != watch.generation) continue;
    if (victim->ticks.load(std::memory_order_relaxed) != watch.ticks) continue;
    std::uint32_t full = kSlotFull;
    if (!victim->next_state.compare_exchange_strong(full, kSlotClaimed, std::memory_order_acquire,
                                                    std::memory_order_relaxed)) {
      continue;
    }
    out = std::move(victim->next);
    victim->next.Reset();
    victim->next_state.store(kSlotEmpty, std::memory_order_release);
    self->watched.clear();
    return true;
  }
  return false;
}

bool ThreadPool::TakeWork(Worker* self, Task& out) {
  const std::uint32_t ticks = self->ticks.load(std::memory_order_relaxed) + 1;
  self->ticks.store(ticks, std::memory_order_relaxed);
  const bool global_first = ticks % kGlobalCheckInterval == 0;
  if (global_first && TakeGlobal(out)) return true;
  if (TakeOwn(self, out)) return true;
  if (!global_first && TakeGlobal(out)) return true;
  if (local_queued_.load(std::memory_order_relaxed) == 0 && self->watched.empty()) return false;
  return Steal(self, out) || Rescue(self, out);
}

bool ThreadPool::WatchSlots(Worker* self) {
  // The caller counted us blind first; we look now (see the file comment). watchers_ drops
  // only after blind_sleepers_ rose, so a filler never sees neither while we are about to
  // sleep.
  const bool was_watching = self->watching;
  StopWatching(self);
  const std::int64_t now = MonotonicNanos();
  self->watched_before.swap(self->watched);
  self->watched.clear();
  const std::size_t n = worker_count_.load(std::memory_order_acquire);
  WorkerTable* table = worker_table_.load(std::memory_order_acquire);
  // Allocates only when the pool has more workers than ever before.
  if (self->watched.capacity() < n) self->watched.reserve(n);
  // Both lists are in table order: one pass over the previous look finds a slot's watch.
  auto old = self->watched_before.cbegin();
  const auto old_end = self->watched_before.cend();
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Worker* w = table->slots[i].load(std::memory_order_acquire);
    if (w == self) continue;
    const std::uint32_t ticks = w->ticks.load(std::memory_order_relaxed);
    sum += ticks;
    if (w->next_state.load(std::memory_order_seq_cst) != kSlotFull) continue;
    const std::uint32_t generation = w->generation.load(std::memory_order_relaxed);
    std::int64_t since = now;
    while (old != old_end && old->victim->index < i) ++old;
    if (old != old_end && old->victim == w && old->generation == generation &&
        old->ticks == ticks) {
      since = old->since;
    }
    self->watched.push_back({w, generation, ticks, since});
  }
  // A watcher stays one while the pool is busy, so that steady hand-offs wake no one.
  // One such watcher is enough.
  const bool busy =
      was_watching && sum != self->ticks_sum && slot_watchers_.load(std::memory_order_relaxed) == 0;
  self->ticks_sum = sum;
  if (self->watched.empty() && !busy) return false;
  self->watching = true;
  slot_watchers_.fetch_add(1, std::memory_order_seq_cst);
  blind_sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  return true;
}

void ThreadPool::StopWatching(Worker* self) noexcept {
  if (!self->watching) return;
  self->watching = false;
  slot_watchers_.fetch_sub(1, std::memory_order_seq_cst);
}

bool ThreadPool::AnySlotFull(const Worker* self) const noexcept {
  const std::size_t n = worker_count_.load(std::memory_order_acquire);
  WorkerTable* table = worker_table_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    const Worker* w = table->slots[i].load(std::memory_order_acquire);
    if (w != self && w->next_state.load(std::memory_order_seq_cst) == kSlotFull) return true;
  }
  return false;
}

void ThreadPool::FlushLocalLocked(Worker* worker) {
  // Called on the worker's own thread only (its slot is private to it).
  {
    MutexLock lock(worker->mu);
    Task task;
    std::size_t moved = 0;
    while (worker->queue.PopFront(task)) {
      PushLocked(std::move(task));
      ++moved;
    }
    worker->queued.store(0, std::memory_order_relaxed);
    local_queued_.fetch_sub(moved, std::memory_order_relaxed);
  }
  std::uint32_t full = kSlotFull;
  if (worker->next_state.compare_exchange_strong(full, kSlotEmpty, std::memory_order_acq_rel,
                                                 std::memory_order_relaxed)) {
    PushLocked(std::move(worker->next));
    worker->next.Reset();
  }
  worker->next_streak = 0;
}

// -----------------------------------------------------------------------------
// Threads
// -----------------------------------------------------------------------------

std::size_t ThreadPool::LiveThreadsLocked() const {
  // Threads that still count towards the size: not asked to exit.
  return active_ + idle_ - stop_idle_;
}

void ThreadPool::StartThreadsLocked(std::size_t n) {
  if (n == 0) return;
  for (std::size_t i = 0; i < n; ++i) {
    Worker* worker = AcquireWorkerLocked();
    ++idle_;  // a new thread counts as idle until it finds work
    ++running_;
    worker->thread = std::thread([this, worker] { WorkerMain(worker); });
  }
  NotifyStateLocked();
}

ThreadPool::Worker* ThreadPool::AcquireWorkerLocked() {
  if (free_workers_ != nullptr) {
    // The thread that had it left with its slot and run queue empty (an idle thread took
    // nothing; a zombie flushed them), and touches it no more. What a thief or a watcher
    // holding a stale pointer reads is therefore a live object: an empty queue, or the new
    // thread's, under the Worker's own lock; the generation tells a watch it changed hands.
    Worker* worker = free_workers_;
    free_workers_ = worker->next_free;
    worker->next_free = nullptr;
    worker->generation.fetch_add(1, std::memory_order_relaxed);
    // The owner-only state starts afresh (written before the new thread starts). The take
    // count goes on from where it was: a watch of the old thread never matches it again.
    worker->next_streak = 0;
    worker->watched.clear();
    worker->watched_before.clear();
    worker->ticks_sum = 0;
    worker->spin_pays = true;
    return worker;
  }
  auto* worker = new Worker;
  const std::size_t n = worker_count_.load(std::memory_order_relaxed);
  WorkerTable* table = worker_table_.load(std::memory_order_relaxed);
  if (table == nullptr || n == table->capacity) {
    auto* bigger = new WorkerTable(table == nullptr ? 8 : table->capacity * 2);
    for (std::size_t i = 0; i < n; ++i) {
      bigger->slots[i].store(table->slots[i].load(std::memory_order_relaxed),
                             std::memory_order_relaxed);
    }
    worker_tables_.push_back(bigger);
    worker_table_.store(bigger, std::memory_order_release);
    table = bigger;
  }
  worker->index = n;
  worker->steal_seed = static_cast<std::uint32_t>(n) * 2654435761u + 1;  // any non-zero seed
  if (worker->steal_seed == 0) worker->steal_seed = 1;
  table->slots[n].store(worker, std::memory_order_release);
  // After the table (see Steal).
  worker_count_.store(n + 1, std::memory_order_release);
  return worker;
}

void ThreadPool::NotifyStateLocked() {
  idle_hint_.store(idle_ - stop_idle_, std::memory_order_relaxed);
  if (options_.observer != nullptr) {
    options_.observer->OnStateChanged(active_, idle_ - stop_idle_);
  }
}

void ThreadPool::SetStopActiveLocked(std::size_t n) {
  stop_active_ = n;
  stop_active_hint_.store(n, std::memory_order_relaxed);
}

void ThreadPool::MaybeLendLocked() {
  // Every running worker is blocked (zombies too run a task until they leave): nothing will
  // take the queued work, and what the blocked workers wait for may be in it.
  if (blocked_ == 0 || count_ == 0 || idle_ - stop_idle_ > 0) return;
  if (active_ + zombies_ > blocked_) return;
  ++loans_;
  StartThreadsLocked(1);
}

void ThreadPool::ShrinkByOneLocked() {
  if (idle_ - stop_idle_ > 0) {
    ++stop_idle_;
    work_cv_.NotifyAll();
  } else {
    SetStopActiveLocked(stop_active_ + 1);
    ++zombies_;
    --active_;
  }
  NotifyStateLocked();
}

ThreadPool::ScopedBlockingWait::ScopedBlockingWait() : pool_(tls_worker_of) {
  if (pool_ == nullptr) return;
  auto* self = static_cast<Worker*>(tls_worker);
  ++self->blocking;
  bool wake = false;
  {
    MutexLock lock(pool_->mu_);
    // What this worker queued for itself may be what it is about to wait for.
    if (self->next_state.load(std::memory_order_relaxed) != kSlotEmpty ||
        self->queued.load(std::memory_order_relaxed) != 0) {
      pool_->FlushLocalLocked(self);
      wake = pool_->ShouldWakeLocked();
    }
    ++pool_->blocked_;
    pool_->MaybeLendLocked();
  }
  if (wake) pool_->work_cv_.NotifyOne();
}

ThreadPool::ScopedBlockingWait::~ScopedBlockingWait() {
  if (pool_ == nullptr) return;
  --static_cast<Worker*>(tls_worker)->blocking;
  std::vector<std::thread> to_join;
  {
    MutexLock lock(pool_->mu_);
    --pool_->blocked_;
    if (pool_->loans_ > 0) {
      --pool_->loans_;
      pool_->ShrinkByOneLocked();
    }
    to_join = pool_->TakeFinishedLocked();
  }
  for (std::thread& t : to_join) t.join();
}

std::vector<std::thread> ThreadPool::TakeFinishedLocked() {
  std::vector<std::thread> out;
  out.swap(finished_);
  return out;
}

void ThreadPool::WorkerMain(Worker* self) {
  tls_worker_of = this;
  tls_worker = self;
  if (options_.thread_start) options_.thread_start();
  bool active = false;
  Task task;
  // The loop runs without mu_ while the worker finds work of its own; every break leaves with
  // mu_ held.
  for (;;) {
    if (!active) {
      mu_.Acquire();
      if (stop_idle_ > 0) {
        --stop_idle_;
        --idle_;
        break;
      }
      mu_.Release();
    }
    if (TakeWork(self, task)) {
      if (!active) {
        mu_.Acquire();
        if (stop_idle_ > 0) {
          // Asked to leave as an idle thread after it looked: run the task as a zombie.
          // (Zombies are interchangeable: should another one leave first, this thread stays
          // and counts as the active thread that left.)
          --stop_idle_;
          --idle_;
          ++zombies_;
          SetStopActiveLocked(stop_active_ + 1);
        } else {
          --idle_;
          ++active_;
        }
        active = true;
        NotifyStateLocked();
        mu_.Release();
        if (self->watching) {
          // A busy worker watches no more; look once more (without the lock), after saying
          // so, so that a slot filled meanwhile by a worker that counted on us still gets a
          // watcher. (Only an idle worker watches: a busy one has nothing to check per task.)
          StopWatching(self);
          if (AnySlotFull(self) && blind_sleepers_.load(std::memory_order_seq_cst) != 0) {
            bool wake = false;
            {
              MutexLock lock(mu_);
              wake = AlertBlindLocked();
            }
            if (wake) work_cv_.NotifyOne();
          }
        }
      }
      core_internal::RunCatching(
          task, [&] { return "pool '" + options_.name + "': a task"; }, SourceLocation::current());
      task.Reset();
      if (stop_active_hint_.load(std::memory_order_relaxed) != 0) {
        mu_.Acquire();
        if (stop_active_ > 0) {
          // Shrunk while running: this thread was already taken off the active count. What
          // it queued for itself goes to the others.
          SetStopActiveLocked(stop_active_ - 1);
          --zombies_;
          FlushLocalLocked(self);
          active = false;
          break;
        }
        mu_.Release();
      }
      continue;
    }
    mu_.Acquire();
    if (active && stop_active_ > 0) {
      // Shrunk while running, and the hint read after the task was stale: leave now.
      SetStopActiveLocked(stop_active_ - 1);
      --zombies_;
      FlushLocalLocked(self);
      active = false;
      break;
    }
    if (count_ != 0 || local_queued_.load(std::memory_order_relaxed) != 0) {
      mu_.Release();
      continue;
    }
    if (active) {
      active = false;
      --active_;
      ++idle_;
      NotifyStateLocked();
    }
    if (shutting_down_) {
      --idle_;
      break;
    }
    if (stop_idle_ > 0) {
      mu_.Release();
      continue;
    }
    if (self->spin_pays && spinning_.load(std::memory_order_relaxed) == 0) {
      mu_.Release();
      spinning_.fetch_add(1, std::memory_order_seq_cst);
      bool found = false;
      const std::int64_t deadline = MonotonicNanos() + kSpinBudgetNs;
      for (int i = 1;; ++i) {
        if (queued_hint_.load(std::memory_order_relaxed) != 0 ||
            local_queued_.load(std::memory_order_relaxed) != 0) {
          found = true;
          break;
        }
        if (i % kPausesPerClockRead == 0 && MonotonicNanos() >= deadline) break;
        CpuRelax();
      }
      spinning_.fetch_sub(1, std::memory_order_seq_cst);
      self->spin_pays = found;
      if (found) continue;
      mu_.Acquire();
    }
    if (count_ != 0 || shutting_down_ || stop_idle_ > 0) {
      mu_.Release();
      continue;
    }
    // Full run-next slots of others: sleep with a bound, to come back for them. Count
    // ourselves blind first (see the file comment), note the alerts, and look without the
    // lock: a scan of every worker under it would hold up every push and every other
    // sleeper. A filler that counted on us meanwhile bumped slot_alerts_, and a push, a
    // shrink or a shutdown that came meanwhile found no sleeper to notify: in either case
    // look again instead of sleeping.
    blind_sleepers_.fetch_add(1, std::memory_order_seq_cst);
    const std::uint64_t alerts = slot_alerts_;
    mu_.Release();
    const bool watch = WatchSlots(self);
    mu_.Acquire();
    if ((!watch && slot_alerts_ != alerts) || count_ != 0 || shutting_down_ || stop_idle_ > 0) {
      if (!watch) blind_sleepers_.fetch_sub(1, std::memory_order_relaxed);
      mu_.Release();
      continue;
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    if (local_queued_.load(std::memory_order_seq_cst) != 0) {
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      if (!watch) blind_sleepers_.fetch_sub(1, std::memory_order_relaxed);
      mu_.Release();
      continue;
    }
    const std::int64_t slept_at = MonotonicNanos();
    constexpr std::chrono::nanoseconds kRescueWait{kRescueAfterNs};
    bool timed_out = false;
    if (watch && (options_.idle_timeout.count() == 0 || options_.idle_timeout > kRescueWait)) {
      (void)work_cv_.WaitFor(mu_, kRescueWait);  // not an idle timeout
    } else if (options_.idle_timeout.count() > 0) {
      timed_out = !work_cv_.WaitFor(mu_, options_.idle_timeout);
    } else {
      work_cv_.Wait(mu_);
    }
    if (!watch) blind_sleepers_.fetch_sub(1, std::memory_order_relaxed);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    if (wakeups_pending_ > 0) {
      --wakeups_pending_;
      wakeups_pending_hint_.store(wakeups_pending_, std::memory_order_seq_cst);
    }
    // Work that came within a spin budget of going to sleep would have been caught spinning.
    self->spin_pays = MonotonicNanos() - slept_at < kSpinBudgetNs;
    if (timed_out && count_ == 0 && local_queued_.load(std::memory_order_relaxed) == 0 &&
        !shutting_down_ && stop_idle_ == 0 && LiveThreadsLocked() > options_.min_size) {
      --idle_;
      if (loans_ > 0) --loans_;  // a lent thread that found nothing to do went back
      NotifyStateLocked();
      break;
    }
    mu_.Release();
  }
  // Leave (mu_ held): hand the thread object to the next control call to join, and the
  // Worker (its slot and run queue empty) to the next thread started; it stays in the table,
  // so that thieves and watchers holding it read a live object.
  StopWatching(self);
  finished_.push_back(std::move(self->thread));
  self->next_free = free_workers_;
  free_workers_ = self;
  --running_;
  MaybeLendLocked();  // a zombie leaving may have been the last worker not blocked
  const bool last = running_ == 0;
  mu_.Release();
  // No longer a worker of this pool before the hook runs: its Worker already serves the next
  // thread, so what the hook pushes to this pool goes through the global queue, not a slot.
  tls_worker_of = nullptr;
  tls_worker = nullptr;
  if (options_.thread_end) options_.thread_end();
  if (last) work_cv_.NotifyAll();  // Shutdown waits for the last worker to leave
}

void ThreadPool::SetSize(int threads, SourceLocation where) {
  if (threads < 0) {
    ReportMisuse("ThreadPool::SetSize to a negative size (" + std::to_string(threads) + ")", where);
    return;
  }
  std::vector<std::thread> to_join;
  {
    MutexLock lock(mu_);
    if (shutting_down_) return;
    to_join = TakeFinishedLocked();
    loans_ = 0;  // the size asked for counts every thread, lent ones included
    const auto target = static_cast<std::size_t>(threads);
    const std::size_t live = LiveThreadsLocked();
    if (target > live) {
      StartThreadsLocked(target - live);
    } else if (target < live) {
      std::size_t excess = live - target;
      const std::size_t idle_now = idle_ - stop_idle_;
      const std::size_t from_idle = std::min(excess, idle_now);
      stop_idle_ += from_idle;
      excess -= from_idle;
      // Running threads finish their task, then exit; they stop counting as active now.
      SetStopActiveLocked(stop_active_ + excess);
      zombies_ += excess;
      active_ -= excess;
      NotifyStateLocked();
      if (from_idle > 0) work_cv_.NotifyAll();
    }
  }
  for (std::thread& t : to_join) t.join();
}

void ThreadPool::Shutdown(SourceLocation where) {
  if (IsWorkerThread()) {
    ReportMisuse("ThreadPool::Shutdown from one of the pool's own workers", where);
    return;
  }
  std::vector<Task> discarded;
  std::vector<std::thread> to_join;
  {
    MutexLock lock(mu_);
    shutting_down_ = true;
    work_cv_.NotifyAll();
    // Workers run what is queued, then leave; the last to leave wakes us.
    while (running_ != 0) work_cv_.Wait(mu_);
    while (count_ > 0) {
      discarded.emplace_back();
      (void)PopLocked(discarded.back());
    }
    to_join = TakeFinishedLocked();
  }
  for (std::thread& t : to_join) t.join();
  if (!discarded.empty()) {
    Log(LogLevel::kWarning,
        "pool '" + options_.name + "' shut down with no thread to run " +
            std::to_string(discarded.size()) + " queued task(s); discarded",
        created_at_);
  }
}

bool ThreadPool::IsShutDown() const {
  MutexLock lock(mu_);
  return shutting_down_;
}

std::size_t ThreadPool::ActiveCount() const {
  MutexLock lock(mu_);
  return active_;
}

std::size_t ThreadPool::IdleCount() const {
  MutexLock lock(mu_);
  return idle_ - stop_idle_;
}

std::size_t ThreadPool::QueueSize() const {
  MutexLock lock(mu_);
  std::size_t n = count_;
  // Workers whose thread left count nothing (their slot and queue are empty).
  const std::size_t workers = worker_count_.load(std::memory_order_acquire);
  const WorkerTable* table = worker_table_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < workers; ++i) {
    const Worker* w = table->slots[i].load(std::memory_order_acquire);
    n += w->queued.load(std::memory_order_relaxed) +
         (w->next_state.load(std::memory_order_relaxed) != kSlotEmpty ? 1 : 0);
  }
  return n;
}

bool ThreadPool::HasQueuedWork() const noexcept {
  if (queued_hint_.load(std::memory_order_relaxed) != 0 ||
      local_queued_.load(std::memory_order_relaxed) != 0) {
    return true;
  }
  return tls_worker_of == this &&
         static_cast<const Worker*>(tls_worker)->next_state.load(std::memory_order_relaxed) !=
             kSlotEmpty;
}

bool ThreadPool::IsWorkerThread() const noexcept {
  return tls_worker_of == this;
}

}  // namespace plexus
