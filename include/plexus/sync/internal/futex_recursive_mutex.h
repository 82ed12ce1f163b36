// Internal: the lock inside plexus::RecursiveMutex. A bus topic takes its RecursiveMutex once
// per publish, so its cost is a publish's: std::recursive_mutex (glibc's recursive pthread
// mutex) spends some 75 instructions on a lock/unlock pair, in two calls into libc that check
// the mutex kind, the owner and the count through the pthread structure. This one is a futex
// word (Drepper's three-state mutex, "Futexes are tricky"), the owner and the depth: the
// uncontended pair is one compare-and-swap, one exchange and a few plain loads and stores, all
// inline. A waiter spins briefly before it sleeps (the topic's fan-outs are short), and a
// release wakes a sleeper only when one may sleep. 16 bytes, where std::recursive_mutex is 40.
//
// Thread safety: a Lockable with the std::recursive_mutex contract: lock, try_lock and unlock
// from any thread; the owner may lock again and unlocks as often; unlocking a lock the
// calling thread does not hold is undefined.

#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace plexus::sync_internal {

class FutexRecursiveMutex {
 public:
  FutexRecursiveMutex() noexcept = default;
  FutexRecursiveMutex(const FutexRecursiveMutex&) = delete;
  FutexRecursiveMutex& operator=(const FutexRecursiveMutex&) = delete;

  void lock() noexcept {
    const std::thread::id self = std::this_thread::get_id();
    // Only this thread ever stores its own id here, and clears it before it lets go: a
    // relaxed load that sees it is this thread's own earlier store.
    if (owner_.load(std::memory_order_relaxed) == self) {
      ++depth_;
      return;
    }
    std::uint32_t expected = kFree;
    if (!state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire)) {
      LockSlow();
    }
    owner_.store(self, std::memory_order_relaxed);
    depth_ = 1;
  }

  bool try_lock() noexcept {
    const std::thread::id self = std::this_thread::get_id();
    if (owner_.load(std::memory_order_relaxed) == self) {
      ++depth_;
      return true;
    }
    std::uint32_t expected = kFree;
    if (!state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire)) {
      return false;
    }
    owner_.store(self, std::memory_order_relaxed);
    depth_ = 1;
    return true;
  }

  void unlock() noexcept {
    if (--depth_ != 0) return;
    owner_.store(std::thread::id(), std::memory_order_relaxed);
    if (state_.exchange(kFree, std::memory_order_release) == kContended) Wake();
  }

 private:
  static constexpr std::uint32_t kFree = 0;
  static constexpr std::uint32_t kLocked = 1;     // held, nobody sleeping
  static constexpr std::uint32_t kContended = 2;  // held, someone may sleep on it

  // Spins a little, then sleeps on the word until it is acquired (futex_recursive_mutex.cc).
  void LockSlow() noexcept;
  void Wake() noexcept;

  std::atomic<std::uint32_t> state_{kFree};
  std::uint32_t depth_ = 0;  // written by the owner only, under the lock
  std::atomic<std::thread::id> owner_{};
};

}  // namespace plexus::sync_internal
