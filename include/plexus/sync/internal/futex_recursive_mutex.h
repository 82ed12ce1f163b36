// Internal: the lock inside plexus::RecursiveMutex. A bus topic takes its RecursiveMutex once
// per publish, so its cost is a publish's: std::recursive_mutex (glibc's recursive pthread
// mutex) spends some 75 instructions on a lock/unlock pair, in two calls into libc that check
// the mutex kind, the owner and the count through the pthread structure. This one is a futex
// word (FutexWord: Drepper's three-state mutex, spinning briefly before it sleeps, as the
// topic's fan-outs are short), the owner and the depth: the uncontended pair is one
// compare-and-swap, one exchange and a few plain loads and stores, all inline. 16 bytes, where
// std::recursive_mutex is 40.
//
// Thread safety: a Lockable with the std::recursive_mutex contract: lock, try_lock and unlock
// from any thread; the owner may lock again and unlocks as often; unlocking a lock the
// calling thread does not hold is undefined.

#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include "plexus/sync/internal/futex_word.h"

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
    word_.Lock();
    owner_.store(self, std::memory_order_relaxed);
    depth_ = 1;
  }

  bool try_lock() noexcept {
    const std::thread::id self = std::this_thread::get_id();
    if (owner_.load(std::memory_order_relaxed) == self) {
      ++depth_;
      return true;
    }
    if (!word_.TryLock()) return false;
    owner_.store(self, std::memory_order_relaxed);
    depth_ = 1;
    return true;
  }

  void unlock() noexcept {
    if (--depth_ != 0) return;
    owner_.store(std::thread::id(), std::memory_order_relaxed);
    word_.Unlock();
  }

 private:
  FutexWord word_;
  std::uint32_t depth_ = 0;  // written by the owner only, under the lock
  std::atomic<std::thread::id> owner_{};
};

}  // namespace plexus::sync_internal
