// ThreadPool: one mutex-guarded ring buffer of tasks, workers that sleep on a condition
// variable, and bookkeeping of (active, idle) that follows Asterisk's threadpool: a thread is
// idle while it waits for work and active while it runs tasks; shrinking stops idle threads
// first, then turns active ones into zombies that exit after their task.
//
// Wake-ups: a push wakes one sleeping worker, and only if no earlier wake-up is still on its
// way to a sleeper; a worker that finds the queue empty spins briefly (without the lock)
// before it sleeps, which keeps a steady producer from paying a futex wake per task.

#include "plexus/exec/thread_pool.h"

#include <algorithm>
#include <string>

#include "plexus/core/internal/cpu_relax.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"

namespace plexus {

namespace {

thread_local ThreadPool* tls_worker_of = nullptr;

// Polls for work this many times (with a pause each) before a worker sleeps.
constexpr int kIdleSpins = 2000;

using core_internal::CpuRelax;

}  // namespace

struct ThreadPool::Worker {
  std::thread thread;
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

ThreadPool::~ThreadPool() = default;

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
// The queue
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
  queued_hint_.store(count_, std::memory_order_relaxed);
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
      if (sleepers_ > wakeups_pending_) {
        ++wakeups_pending_;
        wake = true;
      } else if (idle_ == 0 && options_.auto_increment > 0) {
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
// Threads
// -----------------------------------------------------------------------------

std::size_t ThreadPool::LiveThreadsLocked() const {
  // Threads that still count towards the size: not asked to exit.
  return active_ + idle_ - stop_idle_;
}

void ThreadPool::StartThreadsLocked(std::size_t n) {
  if (n == 0) return;
  for (std::size_t i = 0; i < n; ++i) {
    auto* worker = new Worker;
    ++idle_;  // a new thread counts as idle until it finds work
    workers_.push_back(worker);
    worker->thread = std::thread([this, worker] { WorkerMain(worker); });
  }
  NotifyStateLocked();
}

void ThreadPool::NotifyStateLocked() {
  if (options_.observer != nullptr) {
    options_.observer->OnStateChanged(active_, idle_ - stop_idle_);
  }
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
    ++stop_active_;
    ++zombies_;
    --active_;
  }
  NotifyStateLocked();
}

ThreadPool::ScopedBlockingWait::ScopedBlockingWait() : pool_(tls_worker_of) {
  if (pool_ == nullptr) return;
  MutexLock lock(pool_->mu_);
  ++pool_->blocked_;
  pool_->MaybeLendLocked();
}

ThreadPool::ScopedBlockingWait::~ScopedBlockingWait() {
  if (pool_ == nullptr) return;
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
  if (options_.thread_start) options_.thread_start();
  mu_.Acquire();
  bool active = false;
  Task task;
  for (;;) {
    if (!active && stop_idle_ > 0) {
      --stop_idle_;
      --idle_;
      break;
    }
    if (PopLocked(task)) {
      if (!active) {
        active = true;
        --idle_;
        ++active_;
        NotifyStateLocked();
      }
      mu_.Release();
      core_internal::RunCatching(
          task, [&] { return "pool '" + options_.name + "': a task"; }, SourceLocation::current());
      task.Reset();
      mu_.Acquire();
      if (stop_active_ > 0) {
        // Shrunk while running: this thread was already taken off the active count.
        --stop_active_;
        --zombies_;
        active = false;
        break;
      }
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
    // Spin a little before sleeping: a producer that keeps pushing then never pays a wake.
    mu_.Release();
    for (int i = 0; i < kIdleSpins && queued_hint_.load(std::memory_order_relaxed) == 0; ++i) {
      CpuRelax();
    }
    mu_.Acquire();
    if (count_ != 0 || shutting_down_ || stop_idle_ > 0) continue;
    ++sleepers_;
    bool timed_out = false;
    if (options_.idle_timeout.count() > 0) {
      timed_out = !work_cv_.WaitFor(mu_, options_.idle_timeout);
    } else {
      work_cv_.Wait(mu_);
    }
    --sleepers_;
    if (wakeups_pending_ > 0) --wakeups_pending_;
    if (timed_out && count_ == 0 && !shutting_down_ && stop_idle_ == 0 &&
        LiveThreadsLocked() > options_.min_size) {
      --idle_;
      if (loans_ > 0) --loans_;  // a lent thread that found nothing to do went back
      NotifyStateLocked();
      break;
    }
  }
  // Leave: hand the thread object to the next control call to join.
  auto it = std::find(workers_.begin(), workers_.end(), self);
  if (it != workers_.end()) workers_.erase(it);
  finished_.push_back(std::move(self->thread));
  delete self;
  MaybeLendLocked();  // a zombie leaving may have been the last worker not blocked
  const bool last = workers_.empty();
  mu_.Release();
  if (options_.thread_end) options_.thread_end();
  tls_worker_of = nullptr;
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
      stop_active_ += excess;
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
    while (!workers_.empty()) work_cv_.Wait(mu_);
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
  return count_;
}

bool ThreadPool::IsWorkerThread() const noexcept {
  return tls_worker_of == this;
}

}  // namespace plexus
