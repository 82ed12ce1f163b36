// Internal: a lock word on the futex system call, Drepper's three-state mutex ("Futexes are
// tricky"): free, held, held with someone perhaps asleep on it. The lock of plexus's own hot
// mutexes (the topic's FutexRecursiveMutex, the bus mailbox's lock); not API.
//
// The uncontended pair is one compare-and-swap and one exchange, inline. A waiter spins briefly
// before it sleeps, because the locks built on it are held for short stretches (a topic's
// fan-out without synchronous subscribers, a mailbox's enqueue): neither side then pays a
// system call while the other only passes through (glibc's mutex sleeps at once). A release
// wakes a sleeper only when one may sleep. Four bytes. std::atomic::wait/notify would add
// nothing but a layer: libstdc++ 12 implements them with a spin phase and a process-wide table
// of waiters of its own, which this word does not need.
//
// Thread safety: a plain (non-recursive) lock: Lock, TryLock and Unlock from any thread;
// unlocking a word the calling thread does not hold is undefined. It knows no owner and is not
// lock-order validated: the types built on it add what they need.

#pragma once

#include <atomic>
#include <cstdint>

namespace plexus::sync_internal {

class FutexWord {
 public:
  FutexWord() noexcept = default;
  FutexWord(const FutexWord&) = delete;
  FutexWord& operator=(const FutexWord&) = delete;

  void Lock() noexcept {
    if (!TryLock()) LockSlow();
  }
  bool TryLock() noexcept {
    std::uint32_t expected = kFree;
    return state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire);
  }
  void Unlock() noexcept {
    if (state_.exchange(kFree, std::memory_order_release) == kContended) Wake();
  }

 private:
  static constexpr std::uint32_t kFree = 0;
  static constexpr std::uint32_t kLocked = 1;     // held, nobody sleeping
  static constexpr std::uint32_t kContended = 2;  // held, someone may sleep on it

  // Spins a little, then sleeps on the word until it is acquired (futex_word.cc).
  void LockSlow() noexcept;
  // Wakes one sleeper.
  void Wake() noexcept;

  std::atomic<std::uint32_t> state_{kFree};
};

}  // namespace plexus::sync_internal
