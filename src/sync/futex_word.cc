#include "plexus/sync/internal/futex_word.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "plexus/core/internal/cpu_relax.h"

namespace plexus::sync_internal {
namespace {

// Polls of a held word before sleeping: the locks built on it are held for well under a
// microsecond (a fan-out without synchronous subscribers, one mailbox enqueue).
constexpr int kSpins = 100;

// The futex call takes the word's address as a plain 32-bit integer.
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

}  // namespace

void FutexWord::LockSlow() noexcept {
  for (int i = 0; i < kSpins; ++i) {
    core_internal::CpuRelax();
    std::uint32_t expected = kFree;
    if (state_.load(std::memory_order_relaxed) == kFree &&
        state_.compare_exchange_weak(expected, kLocked, std::memory_order_acquire)) {
      return;
    }
  }
  // Marked contended from here on, so the holder's release wakes a sleeper; a waiter that
  // gets the word this way keeps the mark (it cannot know whether others still sleep), which
  // costs at most one wake-up that finds nobody.
  while (state_.exchange(kContended, std::memory_order_acquire) != kFree) {
    // Sleeps while the word is still kContended (returns at once if it changed).
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_), FUTEX_WAIT_PRIVATE, kContended,
            nullptr, nullptr, 0);
  }
}

void FutexWord::Wake() noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_), FUTEX_WAKE_PRIVATE, 1, nullptr,
          nullptr, 0);
}

}  // namespace plexus::sync_internal
