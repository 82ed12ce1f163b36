// Helpers shared by the exec suites: Scaled() for loop counts under sanitizers, a gate that
// tasks block on until the test opens it (opened on every exit path), a ThreadPoolObserver
// that records every notification, a scope guard, and barriers on a one-thread pool and on a
// timer heap; and for tests that may find a pool wedged, a detached runner and a way to
// abandon what a stuck thread still uses.

#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <future>
#include <memory>
#include <mutex>
#include <ostream>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/test_support.h"
#include "plexus/core/config.h"
#include "plexus/exec/task_processor.h"
#include "plexus/exec/thread_pool.h"
#include "plexus/exec/timer_heap.h"

namespace plexus_test {

// Sanitized builds run 5-15x slower (and ASan's memory use is larger): big loops shrink there.
inline constexpr bool kSanitized = plexus::kSanitizeThread || plexus::kSanitizeAddress;

constexpr int Scaled(int n) {
  return kSanitized ? n / 10 : n;
}

// Runs a callable when the scope ends (restoring global state even when an ASSERT returns).
template <class F>
class ScopeExit {
 public:
  explicit ScopeExit(F f) : f_(std::move(f)) {}
  ~ScopeExit() { f_(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  F f_;
};

// A one-shot gate. Tasks capture a Waiter (by value: it keeps the gate's state alive however
// long they run) and block in Wait() until the test calls Open(). The Gate opens itself when
// it is destroyed, so a failing test never leaves a task blocked: declare it after the pool,
// task processor or timer heap whose tasks wait on it, so that it is destroyed (opened) first.
class Gate {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    std::atomic<int> arrived{0};
  };

 public:
  class Waiter {
   public:
    void Wait() const {
      state_->arrived.fetch_add(1);
      std::unique_lock lock(state_->mu);
      state_->cv.wait(lock, [&] { return state_->open; });
    }
    void operator()() const { Wait(); }

   private:
    friend class Gate;
    explicit Waiter(std::shared_ptr<State> state) : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
  };

  Gate() : state_(std::make_shared<State>()) {}
  ~Gate() { Open(); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  Waiter waiter() const { return Waiter(state_); }

  void Open() const {
    std::lock_guard lock(state_->mu);
    state_->open = true;
    state_->cv.notify_all();
  }

  // How many waits reached the gate (blocked there, or passed once it opened).
  int Arrived() const { return state_->arrived.load(); }
  bool WaitForArrivals(int n) const {
    return WaitUntil([&] { return Arrived() >= n; });
  }

 private:
  std::shared_ptr<State> state_;
};

// (active, idle) as a pool reports it.
struct PoolState {
  std::size_t active = 0;
  std::size_t idle = 0;
  friend bool operator==(const PoolState&, const PoolState&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const PoolState& s) {
  return os << s.active << "/" << s.idle;
}

// Records every notification of a pool, under its own mutex (the pool calls it with the pool's
// lock held, from any thread). Must outlive the pool: declare it before.
class RecordingObserver final : public plexus::ThreadPoolObserver {
 public:
  void OnTaskPushed(bool queue_was_empty) override {
    std::lock_guard lock(mu_);
    pushes_.push_back(queue_was_empty);
  }
  void OnQueueEmptied() override {
    std::lock_guard lock(mu_);
    ++emptied_;
  }
  void OnStateChanged(std::size_t active, std::size_t idle) override {
    std::lock_guard lock(mu_);
    states_.push_back(PoolState{active, idle});
  }

  std::vector<PoolState> States() const {
    std::lock_guard lock(mu_);
    return states_;
  }
  // The last state reported; 0/0 (where every pool starts) when none was.
  PoolState LastState() const {
    std::lock_guard lock(mu_);
    return states_.empty() ? PoolState{} : states_.back();
  }
  std::size_t StateCount() const {
    std::lock_guard lock(mu_);
    return states_.size();
  }
  // Whether `state` was reported at or after the `from`-th report.
  bool Saw(PoolState state, std::size_t from = 0) const {
    std::lock_guard lock(mu_);
    return std::find(states_.begin() + static_cast<std::ptrdiff_t>(std::min(from, states_.size())),
                     states_.end(), state) != states_.end();
  }
  // The most threads (active + idle) ever reported.
  std::size_t MaxThreads() const {
    std::lock_guard lock(mu_);
    std::size_t most = 0;
    for (const PoolState& s : states_) most = std::max(most, s.active + s.idle);
    return most;
  }
  std::vector<bool> Pushes() const {
    std::lock_guard lock(mu_);
    return pushes_;
  }
  std::size_t EmptiedCount() const {
    std::lock_guard lock(mu_);
    return emptied_;
  }

  bool WaitForState(std::size_t active, std::size_t idle) const {
    return WaitUntil([&] { return LastState() == PoolState{active, idle}; });
  }
  bool WaitForEmptied(std::size_t n = 1) const {
    return WaitUntil([&] { return EmptiedCount() >= n; });
  }

 private:
  mutable std::mutex mu_;
  std::vector<bool> pushes_;
  std::size_t emptied_ = 0;
  std::vector<PoolState> states_;
};

// Waits (with a bound that only a failure reaches) for a future to be ready.
template <class T>
bool WaitFor(const std::future<T>& future) {
  return future.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
}

// Pushes a marker task to `pool` and waits for it: on a one-thread pool (FIFO) every task
// queued before the marker has then run.
inline bool DrainOneThreadPool(plexus::ThreadPool& pool) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> ran = done->get_future();
  if (!pool.Push([done] { done->set_value(); })) return false;
  return WaitFor(ran);
}

// Schedules a timer on `executor` (null: the timer thread) after `delay` and waits for it to
// fire: every timer dispatched to the same executor before it has then been dealt with.
inline bool WaitForLaterTimer(plexus::TimerHeap& heap, std::chrono::nanoseconds delay,
                              const plexus::Ref<plexus::TaskProcessor>& executor) {
  auto fired = std::make_shared<std::promise<void>>();
  std::future<void> done = fired->get_future();
  heap.Schedule(delay, [fired] { fired->set_value(); }, {.executor = executor});
  return WaitFor(done);
}

// Leaks `refs`: a test that found a pool wedged cannot destroy it (that would join the stuck
// worker), so it leaks what the stuck thread uses and reports the failure instead of hanging.
template <class... T>
void Abandon(plexus::Ref<T>&... refs) {
  (static_cast<void>(refs.Detach()), ...);
}

// Runs `body` on a thread of its own and returns its result as a future; the thread is
// detached, so a body that never returns leaves a future that never becomes ready.
template <class Body>
auto RunDetached(Body body) -> std::future<decltype(body())> {
  using Result = decltype(body());
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  std::thread([promise, body = std::move(body)]() mutable {
    if constexpr (std::is_void_v<Result>) {
      body();
      promise->set_value();
    } else {
      promise->set_value(body());
    }
  }).detach();
  return future;
}

}  // namespace plexus_test
