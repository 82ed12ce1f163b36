// TimerHeap: slots (one per timer, reused, with a generation so that stale ids are harmless)
// and a binary min-heap of slot indices ordered by (deadline, schedule sequence); each slot
// knows its heap position, so cancel and reschedule are O(log n).
//
// A slot's life: kFree -> kPending (in the heap) -> kDispatched (taken off the heap by the
// timer thread; on its way to the timer thread's own loop or to an executor) -> kRunning (the
// callback runs) -> kFree. A cancel while kDispatched marks it and the dispatch frees it
// unrun. Callbacks and group references leave the slot under the lock and are destroyed
// after it was let go, so no user code (a destroy handler of a group whose last reference
// a timer held) ever runs under the heap's lock.

#include "plexus/exec/timer_heap.h"

#include <algorithm>
#include <cstdio>

#include "plexus/core/id.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"
#include "plexus/core/thread_id.h"
#include "timer_heap_registry.h"

namespace plexus {

struct TimerHeap::Slot {
  MonotonicClock::time_point deadline{};
  std::uint64_t sequence = 0;
  Task callback;
  Ref<GroupLock> group;
  Ref<TaskProcessor> executor;
  SourceLocation where{};
  ThreadToken running_on = 0;
  std::uint32_t generation = 1;
  std::uint32_t heap_index = 0;
  SlotState state = SlotState::kFree;
  bool cancelled = false;
};

namespace {
// Timers taken off the heap per pass of the timer thread, so that a flood of due timers does
// not keep the lock from schedulers for long.
constexpr std::size_t kDispatchBatch = 256;
}  // namespace

Ref<TimerHeap> TimerHeap::Create(std::string name) {
  return Ref<TimerHeap>::Adopt(new TimerHeap(std::move(name)));
}

TimerHeap::TimerHeap(std::string name) : name_(std::move(name)), id_(NextUniqueId()) {
  thread_ = std::thread([this] { ThreadMain(); });
  exec_internal::RegisterTimerHeap(this);
}

TimerHeap::~TimerHeap() {
  exec_internal::UnregisterTimerHeap(this);
}

void TimerHeap::LastReferenceDropped() const {
  auto* self = const_cast<TimerHeap*>(this);
  const bool on_timer_thread = thread_.get_id() == std::this_thread::get_id();
  {
    MutexLock lock(self->mu_);
    self->stopping_ = true;
    // A callback on the timer thread dropped the last reference: the thread cannot join
    // itself, so it finishes the heap when its loop ends.
    self->free_on_exit_ = on_timer_thread;
  }
  self->wake_cv_.NotifyAll();
  if (on_timer_thread) {
    self->thread_.detach();
    return;
  }
  self->thread_.join();
  self->CancelAllAndFree();
}

void TimerHeap::CancelAllAndFree() {
  // The callbacks and group references of pending timers die outside the lock.
  std::vector<Released> released;
  {
    MutexLock lock(mu_);
    for (std::uint32_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].state == SlotState::kFree) continue;
      FreeSlotLocked(i, released.emplace_back());
    }
    heap_.clear();
  }
  released.clear();
  delete this;
}

// -----------------------------------------------------------------------------
// The heap
// -----------------------------------------------------------------------------

bool TimerHeap::LessLocked(std::uint32_t a, std::uint32_t b) const {
  const Slot& x = slots_[a];
  const Slot& y = slots_[b];
  return x.deadline != y.deadline ? x.deadline < y.deadline : x.sequence < y.sequence;
}

void TimerHeap::PlaceLocked(std::size_t at, std::uint32_t slot) {
  heap_[at] = slot;
  slots_[slot].heap_index = static_cast<std::uint32_t>(at);
}

void TimerHeap::SiftUpLocked(std::size_t at) {
  const std::uint32_t moving = heap_[at];
  while (at > 0) {
    const std::size_t parent = (at - 1) / 2;
    if (!LessLocked(moving, heap_[parent])) break;
    PlaceLocked(at, heap_[parent]);
    at = parent;
  }
  PlaceLocked(at, moving);
}

void TimerHeap::SiftDownLocked(std::size_t at) {
  const std::uint32_t moving = heap_[at];
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t child = 2 * at + 1;
    if (child >= n) break;
    if (child + 1 < n && LessLocked(heap_[child + 1], heap_[child])) ++child;
    if (!LessLocked(heap_[child], moving)) break;
    PlaceLocked(at, heap_[child]);
    at = child;
  }
  PlaceLocked(at, moving);
}

void TimerHeap::HeapPushLocked(std::uint32_t slot) {
  heap_.push_back(slot);
  SiftUpLocked(heap_.size() - 1);
}

void TimerHeap::HeapRemoveLocked(std::uint32_t slot) {
  const std::size_t at = slots_[slot].heap_index;
  const std::uint32_t last = heap_.back();
  heap_.pop_back();
  if (at == heap_.size()) return;  // it was the last element
  PlaceLocked(at, last);
  if (at > 0 && LessLocked(last, heap_[(at - 1) / 2])) {
    SiftUpLocked(at);
  } else {
    SiftDownLocked(at);
  }
}

void TimerHeap::FreeSlotLocked(std::uint32_t slot, Released& out) {
  // Everything that may run user code when destroyed (a group's destroy handlers, a
  // captured object's destructor, a task processor's shutdown) leaves through `out`.
  Slot& s = slots_[slot];
  out.group = std::move(s.group);
  out.callback = std::move(s.callback);
  out.executor = std::move(s.executor);
  s.state = SlotState::kFree;
  s.cancelled = false;
  s.running_on = 0;
  if (++s.generation == 0) s.generation = 1;
  free_slots_.push_back(slot);
}

TimerHeap::Slot* TimerHeap::FindLocked(TimerId id) {
  if (id.slot >= slots_.size()) return nullptr;
  Slot& s = slots_[id.slot];
  if (s.generation != id.generation || s.state == SlotState::kFree) return nullptr;
  return &s;
}

bool TimerHeap::CheckId(TimerId id, SourceLocation where, const char* operation) const {
  if (id.heap == this || !id) return true;
  ReportMisuse(std::string("TimerHeap::") + operation + " with a timer of another heap", where);
  return false;
}

// -----------------------------------------------------------------------------
// Scheduling and cancelling
// -----------------------------------------------------------------------------

TimerId TimerHeap::Schedule(std::chrono::nanoseconds delay, Task callback, TimerOptions options,
                            SourceLocation where) {
  return ScheduleAt(MonotonicClock::now() + delay, std::move(callback), std::move(options), where);
}

TimerId TimerHeap::ScheduleAt(MonotonicClock::time_point deadline, Task callback,
                              TimerOptions options, SourceLocation where) {
  if (!callback) {
    ReportMisuse("TimerHeap::Schedule of an empty callback", where);
    return TimerId{};
  }
  TimerId id;
  bool earliest = false;
  {
    MutexLock lock(mu_);
    std::uint32_t index;
    if (!free_slots_.empty()) {
      index = free_slots_.back();
      free_slots_.pop_back();
    } else {
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    Slot& s = slots_[index];
    s.deadline = deadline;
    s.sequence = next_sequence_++;
    ++scheduled_;
    s.callback = std::move(callback);
    s.group = std::move(options.group);
    s.executor = std::move(options.executor);
    s.where = where;
    s.state = SlotState::kPending;
    HeapPushLocked(index);
    earliest = heap_.front() == index;
    id = TimerId{index, s.generation, this};
  }
  if (earliest) wake_cv_.NotifyOne();
  return id;
}

bool TimerHeap::Cancel(TimerId id, SourceLocation where) {
  if (!CheckId(id, where, "Cancel")) return false;
  Released released;  // declared before the guard: destroyed after the lock was let go
  MutexLock lock(mu_);
  Slot* s = FindLocked(id);
  if (s == nullptr) return false;
  switch (s->state) {
    case SlotState::kPending:
      HeapRemoveLocked(id.slot);
      FreeSlotLocked(id.slot, released);
      return true;
    case SlotState::kDispatched:
      if (s->cancelled) return false;
      s->cancelled = true;  // the dispatch frees it unrun
      return true;
    default:
      return false;
  }
}

bool TimerHeap::CancelAndWait(TimerId id, SourceLocation where) {
  if (!CheckId(id, where, "CancelAndWait")) return false;
  Released released;  // declared before the lock: destroyed after it was let go
  MutexLock lock(mu_);
  Slot* s = FindLocked(id);
  if (s == nullptr) return false;
  if (s->state == SlotState::kPending) {
    HeapRemoveLocked(id.slot);
    FreeSlotLocked(id.slot, released);
    return true;
  }
  if (s->state == SlotState::kDispatched && !s->cancelled) {
    s->cancelled = true;
    return true;
  }
  if (s->state == SlotState::kRunning && s->running_on == CurrentThreadToken()) {
    return false;  // from its own callback: it cannot wait for itself
  }
  // Running elsewhere (or dispatched and already cancelled): wait for the slot to be freed.
  while (FindLocked(id) != nullptr) done_cv_.Wait(mu_);
  return false;
}

bool TimerHeap::Reschedule(TimerId id, std::chrono::nanoseconds delay, SourceLocation where) {
  if (!CheckId(id, where, "Reschedule")) return false;
  bool earliest = false;
  {
    MutexLock lock(mu_);
    Slot* s = FindLocked(id);
    if (s == nullptr || s->state != SlotState::kPending) return false;
    HeapRemoveLocked(id.slot);
    s->deadline = MonotonicClock::now() + delay;
    s->sequence = next_sequence_++;
    HeapPushLocked(id.slot);
    earliest = heap_.front() == id.slot;
  }
  if (earliest) wake_cv_.NotifyOne();
  return true;
}

bool TimerHeap::IsPending(TimerId id) const {
  MutexLock lock(mu_);
  if (id.heap != this || id.slot >= slots_.size()) return false;
  const Slot& s = slots_[id.slot];
  if (s.generation != id.generation) return false;
  return s.state == SlotState::kPending || (s.state == SlotState::kDispatched && !s.cancelled);
}

std::size_t TimerHeap::PendingCount() const {
  MutexLock lock(mu_);
  return heap_.size();
}

TimerHeapStats TimerHeap::Stats() const {
  TimerHeapStats stats;
  stats.name = name_;
  stats.id = id_;
  const auto now = MonotonicClock::now();
  MutexLock lock(mu_);
  stats.scheduled = scheduled_;
  stats.fired = fired_;
  stats.pending = heap_.size();
  if (!heap_.empty()) stats.next_due_in = slots_[heap_.front()].deadline - now;
  return stats;
}

// -----------------------------------------------------------------------------
// Firing
// -----------------------------------------------------------------------------

void TimerHeap::ThreadMain() {
  struct Due {
    std::uint32_t slot;
    std::uint32_t generation;
    TaskProcessor* executor;
  };
  std::vector<Due> due;
  mu_.Acquire();
  while (!stopping_) {
    if (heap_.empty()) {
      wake_cv_.Wait(mu_);
      continue;
    }
    const MonotonicClock::time_point now = MonotonicClock::now();
    if (slots_[heap_.front()].deadline > now) {
      // A copy: slots_ may be reallocated by a Schedule while this thread waits.
      const MonotonicClock::time_point earliest = slots_[heap_.front()].deadline;
      wake_cv_.WaitUntil(mu_, earliest);
      continue;
    }
    due.clear();
    while (!heap_.empty() && due.size() < kDispatchBatch && slots_[heap_.front()].deadline <= now) {
      const std::uint32_t index = heap_.front();
      HeapRemoveLocked(index);
      Slot& s = slots_[index];
      s.state = SlotState::kDispatched;
      due.push_back(Due{index, s.generation, s.executor.get()});
    }
    mu_.Release();
    for (const Due& d : due) {
      if (d.executor == nullptr) {
        Fire(d.slot, d.generation);
        continue;
      }
      // The slot keeps the executor alive until it is freed, which only Fire does now. The
      // job keeps the heap alive; once the last reference went (the heap is stopping) the
      // timer cannot fire any more.
      Task job;
      if (TryAddRef()) {
        job = [heap = Ref<TimerHeap>::Adopt(this), slot = d.slot, generation = d.generation] {
          heap->Fire(slot, generation);
        };
      }
      if (!job || !d.executor->TryPush(job)) {
        // The executor was shut down: the timer cannot fire; it ends as if cancelled.
        if (job) {
          Log(LogLevel::kWarning, "timer heap '" + name_ +
                                      "': the executor of a due timer was shut down; the "
                                      "timer is dropped");
        }
        {
          MutexLock relock(mu_);
          slots_[d.slot].cancelled = true;
        }
        Fire(d.slot, d.generation);
      }
    }
    mu_.Acquire();
  }
  const bool free_self = free_on_exit_;
  mu_.Release();
  if (free_self) CancelAllAndFree();
}

void TimerHeap::Fire(std::uint32_t slot, std::uint32_t generation) {
  Released released;  // destroyed last, after every lock was let go
  Task callback;
  {
    MutexLock lock(mu_);
    Slot& s = slots_[slot];
    if (s.generation != generation || s.state != SlotState::kDispatched) return;
    if (s.cancelled) {
      FreeSlotLocked(slot, released);
      done_cv_.NotifyAll();
      return;
    }
    s.state = SlotState::kRunning;
    s.running_on = CurrentThreadToken();
    callback = std::move(s.callback);
  }
  core_internal::RunCatching(
      callback, [&] { return "timer heap '" + name_ + "': a timer callback"; },
      SourceLocation::current());
  callback.Reset();
  {
    MutexLock lock(mu_);
    ++fired_;
    FreeSlotLocked(slot, released);
  }
  done_cv_.NotifyAll();
}

// -----------------------------------------------------------------------------
// Introspection
// -----------------------------------------------------------------------------

std::vector<PendingTimer> TimerHeap::Pending() const {
  std::vector<std::pair<std::uint64_t, PendingTimer>> rows;
  {
    MutexLock lock(mu_);
    rows.reserve(heap_.size());
    for (std::uint32_t index : heap_) {
      const Slot& s = slots_[index];
      rows.push_back({s.sequence, PendingTimer{TimerId{index, s.generation, this}, s.deadline,
                                               s.where, static_cast<bool>(s.group)}});
    }
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.second.deadline != b.second.deadline ? a.second.deadline < b.second.deadline
                                                  : a.first < b.first;
  });
  std::vector<PendingTimer> out;
  out.reserve(rows.size());
  for (auto& row : rows) out.push_back(row.second);
  return out;
}

std::string TimerHeap::Dump() const {
  const std::vector<PendingTimer> pending = Pending();
  const MonotonicClock::time_point now = MonotonicClock::now();
  std::string out = "timer heap '" + name_ + "': " + std::to_string(pending.size()) + " pending\n";
  for (const PendingTimer& t : pending) {
    char line[128];
    const double left_ms = std::chrono::duration<double, std::milli>(t.deadline - now).count();
    std::snprintf(line, sizeof line, "  timer %u#%u in %.3f ms%s, scheduled at ", t.id.slot,
                  t.id.generation, left_ms, t.has_group ? ", holds its group" : "");
    out += line;
    out += FormatLocationLong(t.scheduled_at);
    out += "\n";
  }
  return out;
}

}  // namespace plexus
