// -----------------------------------------------------------------------------
// plexus/exec/timer_heap.h
// -----------------------------------------------------------------------------
//
// TimerHeap is PJLIB's timer heap (pj_timer_heap_t) with its group-lock integration, run by a
// thread of its own:
//
//   * Schedule a callback after a delay or at a deadline; it fires once, on the timer thread
//     or pushed to a chosen TaskProcessor. Timers with equal deadlines fire in schedule order.
//   * A timer scheduled with a GroupLock holds one reference on it from scheduling until the
//     callback returned or the timer was cancelled (pj_timer_heap_schedule_w_grp_lock), so
//     the group cannot die while the timer is pending.
//   * Cancel says whether it prevented the callback; CancelAndWait also returns only once a
//     callback that already started has finished; Reschedule moves a pending timer.
//   * Dump lists every pending timer with its deadline and the source line that scheduled it.
//   * Schedule, cancel and reschedule are O(log n); a million pending timers are fine.
//
// Where PJLIB hurts, and what this does instead:
//   * A group reference dropped by the heap is dropped after the heap's lock was let go, so a
//     group destroyed that way never runs its destroy handlers under the heap's lock (PJLIB
//     does, and needs a recursive heap lock to survive handlers that cancel timers).
//   * Timers are named by TimerId values (slot + generation + heap), not by caller-owned
//     entries, so cancelling a timer that already fired, or whose slot was reused, is a
//     well-defined "not pending" answer rather than a use of freed memory; an id of another
//     heap is reported as misuse.
//   * ScopedTimer, the owning form, cancels (and waits) in its destructor, where PJLIB logs
//     "Bug!" for a destroyed entry that is still scheduled and leaks its group reference.
//
// Thread safety: thread-safe. Callbacks may schedule and cancel timers, their own included.
// CancelAndWait from the timer's own callback does not wait for itself.
//
// Lifetime: shared through Ref<TimerHeap>. Dropping the last reference stops the timer thread
// and cancels every pending timer (dropping their group references); callbacks already handed
// to a task processor keep the heap alive until they ran.

#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "plexus/core/clock.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/exec/task.h"
#include "plexus/exec/task_processor.h"
#include "plexus/sync/cond_var.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/mutex.h"

namespace plexus {

class TimerHeap;

// Names one scheduled timer. Default-constructed: names none.
struct TimerId {
  std::uint32_t slot = 0;
  std::uint32_t generation = 0;  // 0: no timer
  const TimerHeap* heap = nullptr;

  explicit operator bool() const noexcept { return generation != 0; }
  friend bool operator==(const TimerId&, const TimerId&) = default;
};

struct TimerOptions {
  // Held (one reference) from scheduling until the callback returned or the timer was
  // cancelled.
  Ref<GroupLock> group;
  // Where the callback runs; null: on the timer thread (keep such callbacks short).
  Ref<TaskProcessor> executor;
};

// One pending timer as Dump/Pending report it.
struct PendingTimer {
  TimerId id;
  MonotonicClock::time_point deadline;
  SourceLocation scheduled_at;
  bool has_group;
};

// A snapshot of a timer heap's counters, as TimerHeap::Stats and ListTimerHeaps report it.
struct TimerHeapStats {
  std::string name;
  std::uint64_t id = 0;         // process-unique (names need not be)
  std::uint64_t scheduled = 0;  // timers ever scheduled
  std::uint64_t fired = 0;      // callbacks that ran (threw or not)
  std::size_t pending = 0;      // timers waiting for their deadline
  // Time until the earliest pending deadline (negative when overdue); zero when none.
  std::chrono::nanoseconds next_due_in{0};
};

// Every live timer heap's counters, in creation order.
std::vector<TimerHeapStats> ListTimerHeaps();

class TimerHeap final : public RefCounted {
 public:
  static Ref<TimerHeap> Create(std::string name = "timer");

  TimerId Schedule(std::chrono::nanoseconds delay, Task callback, TimerOptions options = {},
                   SourceLocation where = SourceLocation::current());
  TimerId ScheduleAt(MonotonicClock::time_point deadline, Task callback, TimerOptions options = {},
                     SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(mu_);

  // Returns true when this call prevented the callback (it had not started); false when the
  // timer already fired, is running, was cancelled, or the id names no timer. An id of
  // another heap is misuse.
  bool Cancel(TimerId id, SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(mu_);
  // As Cancel, and if the callback is running on another thread, returns once it finished.
  bool CancelAndWait(TimerId id, SourceLocation where = SourceLocation::current())
      PLEXUS_EXCLUDES(mu_);
  // Moves a pending timer to a new deadline (it then fires after timers already due at that
  // deadline). Returns false when the timer is no longer pending.
  bool Reschedule(TimerId id, std::chrono::nanoseconds delay,
                  SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(mu_);

  bool IsPending(TimerId id) const PLEXUS_EXCLUDES(mu_);
  std::size_t PendingCount() const PLEXUS_EXCLUDES(mu_);
  // Pending timers in deadline order.
  std::vector<PendingTimer> Pending() const PLEXUS_EXCLUDES(mu_);
  // One line per pending timer: its id, time left, group (if any), where it was scheduled.
  std::string Dump() const;
  TimerHeapStats Stats() const PLEXUS_EXCLUDES(mu_);
  const std::string& Name() const noexcept { return name_; }

 private:
  struct Slot;
  // What a freed slot gives up; destroyed by the caller after the heap's lock was let go.
  struct Released {
    Ref<GroupLock> group;
    Task callback;
    Ref<TaskProcessor> executor;
  };
  enum class SlotState : std::uint8_t { kFree, kPending, kDispatched, kRunning };

  explicit TimerHeap(std::string name);
  ~TimerHeap() override;
  void LastReferenceDropped() const override;

  void ThreadMain() PLEXUS_EXCLUDES(mu_);
  // Cancels every timer still in the heap, then deletes the heap.
  void CancelAllAndFree() PLEXUS_EXCLUDES(mu_);
  // Runs the callback of a dispatched slot (on the timer thread or an executor).
  void Fire(std::uint32_t slot, std::uint32_t generation) PLEXUS_EXCLUDES(mu_);
  bool CheckId(TimerId id, SourceLocation where, const char* operation) const;
  Slot* FindLocked(TimerId id) PLEXUS_REQUIRES(mu_);
  void FreeSlotLocked(std::uint32_t slot, Released& out) PLEXUS_REQUIRES(mu_);
  void HeapPushLocked(std::uint32_t slot) PLEXUS_REQUIRES(mu_);
  void HeapRemoveLocked(std::uint32_t slot) PLEXUS_REQUIRES(mu_);
  void SiftUpLocked(std::size_t at) PLEXUS_REQUIRES(mu_);
  void SiftDownLocked(std::size_t at) PLEXUS_REQUIRES(mu_);
  bool LessLocked(std::uint32_t a, std::uint32_t b) const PLEXUS_REQUIRES(mu_);
  void PlaceLocked(std::size_t at, std::uint32_t slot) PLEXUS_REQUIRES(mu_);

  const std::string name_;
  const std::uint64_t id_;
  mutable Mutex mu_;
  CondVar wake_cv_;  // the timer thread: a new earliest deadline, or stop
  CondVar done_cv_;  // CancelAndWait: a running callback finished
  std::vector<Slot> slots_ PLEXUS_GUARDED_BY(mu_);
  std::vector<std::uint32_t> free_slots_ PLEXUS_GUARDED_BY(mu_);
  // Slot indices, ordered by (deadline, sequence).
  std::vector<std::uint32_t> heap_ PLEXUS_GUARDED_BY(mu_);
  std::uint64_t next_sequence_ PLEXUS_GUARDED_BY(mu_) = 0;
  bool stopping_ PLEXUS_GUARDED_BY(mu_) = false;
  // The timer thread deletes the heap when its loop ends.
  bool free_on_exit_ PLEXUS_GUARDED_BY(mu_) = false;
  std::uint64_t scheduled_ PLEXUS_GUARDED_BY(mu_) = 0;
  std::uint64_t fired_ PLEXUS_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// Owns one timer at a time: scheduling again replaces (cancels) the previous one, and the
// destructor cancels and waits, so the callback never runs after the ScopedTimer is gone.
//
// Thread safety: thread-compatible (one owner); the callback may run on another thread.
class ScopedTimer {
 public:
  explicit ScopedTimer(Ref<TimerHeap> heap) : heap_(std::move(heap)) {}
  ~ScopedTimer() { Cancel(); }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

  void Schedule(std::chrono::nanoseconds delay, Task callback, TimerOptions options = {},
                SourceLocation where = SourceLocation::current()) {
    Cancel();
    id_ = heap_->Schedule(delay, std::move(callback), std::move(options), where);
  }
  // Cancels and waits; returns whether the callback was prevented.
  bool Cancel() {
    if (!id_) return false;
    return heap_->CancelAndWait(std::exchange(id_, TimerId{}));
  }
  bool IsPending() const { return id_ && heap_->IsPending(id_); }
  TimerId Id() const noexcept { return id_; }

 private:
  Ref<TimerHeap> heap_;
  TimerId id_;
};

}  // namespace plexus
