#include "plexus/sync/internal/futex_recursive_mutex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "plexus/core/internal/cpu_relax.h"

namespace plexus::sync_internal {
namespace {

// Polls of a held lock before sleeping: a fan-out without synchronous subscribers holds its
// topic's lock for well under a microsecond.
constexpr int kSpins = 100;

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

}  // namespace

void FutexRecursiveMutex::LockSlow() noexcept {
  for (int i = 0; i < kSpins; ++i) {
    core_internal::CpuRelax();
    std::uint32_t expected = kFree;
    if (state_.load(std::memory_order_relaxed) == kFree &&
        state_.compare_exchange_weak(expected, kLocked, std::memory_order_acquire)) {
      return;
    }
  }
  // Marked contended from here on, so the holder's release wakes a sleeper; a waiter that
  // gets the lock this way keeps the mark (it cannot know whether others still sleep), which
  // costs at most one wake-up that finds nobody.
  while (state_.exchange(kContended, std::memory_order_acquire) != kFree) {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_), FUTEX_WAIT_PRIVATE, kContended,
            nullptr, nullptr, 0);
  }
}

void FutexRecursiveMutex::Wake() noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_), FUTEX_WAKE_PRIVATE, 1, nullptr,
          nullptr, 0);
}

}  // namespace plexus::sync_internal
