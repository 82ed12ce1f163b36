// -----------------------------------------------------------------------------
// plexus/sync/cond_var.h
// -----------------------------------------------------------------------------
//
// CondVar is std::condition_variable for plexus's own locks: it waits on a plexus::Mutex (or
// the internal AnnotatedMutex), so code that guards its state with an annotated, validated
// mutex can still sleep on a condition, and clang's thread-safety analysis checks that the
// waiter holds the mutex.
//
// There is deliberately no predicate overload: clang analyses a lambda on its own and cannot
// see that the mutex is held inside it, so a predicate reading guarded members would need its
// analysis switched off. Write the loop instead, which the analysis checks:
//
//   plexus::MutexLock lock(mu_);
//   while (!ready_) cv_.Wait(mu_);
//
// Lock-order validation: a wait lets go of the mutex and takes it back without a trip through
// the validator; the mutex stays on the thread's held stack meanwhile, which is what a
// validator should believe (the thread holds it again before Wait returns).
//
// Thread safety: thread-safe. Wait* must be called with the mutex held by the caller; Notify*
// may be called with or without it, as for std::condition_variable.

#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"

namespace plexus {

class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases `mu`, sleeps until notified (or woken spuriously), takes `mu` again.
  void Wait(Mutex& mu) PLEXUS_REQUIRES(mu) { WaitOn(Native(mu)); }
  void Wait(sync_internal::AnnotatedMutex& mu) PLEXUS_REQUIRES(mu) { WaitOn(Native(mu)); }

  // As Wait, but gives up at `deadline`. Returns false when it returned because the deadline
  // passed, true when notified (or woken spuriously) before it.
  template <class Clock, class Duration>
  bool WaitUntil(Mutex& mu, std::chrono::time_point<Clock, Duration> deadline) PLEXUS_REQUIRES(mu) {
    return WaitOnUntil(Native(mu), deadline);
  }
  template <class Clock, class Duration>
  bool WaitUntil(sync_internal::AnnotatedMutex& mu,
                 std::chrono::time_point<Clock, Duration> deadline) PLEXUS_REQUIRES(mu) {
    return WaitOnUntil(Native(mu), deadline);
  }

  // As WaitUntil, with a timeout measured on the steady clock.
  template <class Rep, class Period>
  bool WaitFor(Mutex& mu, std::chrono::duration<Rep, Period> timeout) PLEXUS_REQUIRES(mu) {
    return WaitUntil(mu, std::chrono::steady_clock::now() + timeout);
  }
  template <class Rep, class Period>
  bool WaitFor(sync_internal::AnnotatedMutex& mu, std::chrono::duration<Rep, Period> timeout)
      PLEXUS_REQUIRES(mu) {
    return WaitUntil(mu, std::chrono::steady_clock::now() + timeout);
  }

  void NotifyOne() noexcept { cv_.notify_one(); }
  void NotifyAll() noexcept { cv_.notify_all(); }

 private:
  static std::mutex& Native(Mutex& mu) noexcept { return mu.mu_; }
  static std::mutex& Native(sync_internal::AnnotatedMutex& mu) noexcept { return mu.mu_; }

  // The caller holds `native`; the unique_lock adopts it for the wait and gives it back.
  void WaitOn(std::mutex& native) {
    std::unique_lock<std::mutex> lock(native, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  template <class Clock, class Duration>
  bool WaitOnUntil(std::mutex& native, std::chrono::time_point<Clock, Duration> deadline) {
    std::unique_lock<std::mutex> lock(native, std::adopt_lock);
    const bool notified = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return notified;
  }

  std::condition_variable cv_;
};

}  // namespace plexus
