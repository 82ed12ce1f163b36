// The lock of a subscription's mailbox: held by a publisher for one enqueue (a few stores, the
// depth and alert bookkeeping, and, once per 15-slot segment when no recycled segment is spare,
// allocating one) or, under a bounded policy, by a turn taking a batch. Those are short, so a
// waiter spins briefly before it sleeps, and both sides never pay a system call while the
// other only passes through (glibc's mutex sleeps at once). Four bytes, which matters with
// 100 000 subscriptions. Drepper's three-state futex mutex ("Futexes are tricky"), on the
// futex system call directly: the three states are the whole design, and
// std::atomic::wait/notify would add nothing but a layer (libstdc++ 12 implements them with a
// spin phase and a process-wide table of waiters of its own, which this lock does not need).
//
// A leaf lock: nothing is locked while it is held, and it is not lock-order validated (a
// validated lock would cost a publisher a branch and a thread-local access per message). It
// carries the capability attribute, so clang's analysis checks what it guards.

#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "plexus/core/internal/cpu_relax.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"

namespace plexus::bus_internal {

class PLEXUS_CAPABILITY("mutex") MailboxMutex {
 public:
  // For plexus::MutexLock, the guard clang's analysis understands.
  void Acquire(SourceLocation = SourceLocation::current()) noexcept PLEXUS_ACQUIRE() { lock(); }
  void Release() noexcept PLEXUS_RELEASE() { unlock(); }

  void lock() noexcept PLEXUS_ACQUIRE() {
    std::uint32_t expected = kFree;
    if (state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire)) return;
    LockSlow();
  }
  bool try_lock() noexcept PLEXUS_TRY_ACQUIRE(true) {
    std::uint32_t expected = kFree;
    return state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire);
  }
  void unlock() noexcept PLEXUS_RELEASE() {
    if (state_.exchange(kFree, std::memory_order_release) == kContended) Wake();
  }

 private:
  static constexpr std::uint32_t kFree = 0;
  static constexpr std::uint32_t kLocked = 1;     // held, nobody sleeping
  static constexpr std::uint32_t kContended = 2;  // held, someone may sleep on it

  void LockSlow() noexcept {
    for (int i = 0; i < kSpins; ++i) {
      core_internal::CpuRelax();
      std::uint32_t expected = kFree;
      if (state_.load(std::memory_order_relaxed) == kFree &&
          state_.compare_exchange_weak(expected, kLocked, std::memory_order_acquire)) {
        return;
      }
    }
    while (state_.exchange(kContended, std::memory_order_acquire) != kFree) {
      Sleep();
    }
  }

  // Sleeps while the state is still kContended (returns at once if it changed).
  void Sleep() noexcept {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_), FUTEX_WAIT_PRIVATE, kContended,
            nullptr, nullptr, 0);
  }
  void Wake() noexcept {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_), FUTEX_WAKE_PRIVATE, 1, nullptr,
            nullptr, 0);
  }

  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  static constexpr int kSpins = 100;
  std::atomic<std::uint32_t> state_{kFree};
};

}  // namespace plexus::bus_internal
