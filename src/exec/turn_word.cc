#include "plexus/exec/internal/turn_word.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "plexus/core/internal/cpu_relax.h"

namespace plexus::exec_internal {
namespace {

// Polls of a held word before sleeping: a push or a turn's swap holds it for well under a
// microsecond.
constexpr int kSpins = 100;

// The futex call takes the word's address as a plain 32-bit integer.
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

}  // namespace

void TurnWord::LockSlow() noexcept {
  for (int i = 0; i < kSpins; ++i) {
    core_internal::CpuRelax();
    if ((word_.load(std::memory_order_relaxed) & kLockMask) == 0 && TryLock()) return;
  }
  // Marked contended from here on, so the holder's release wakes a sleeper; a waiter that
  // gets the word this way keeps the mark (it cannot know whether others still sleep), which
  // costs at most one wake-up that finds nobody. The flags are kept as they are.
  std::uint32_t old = word_.load(std::memory_order_relaxed);
  for (;;) {
    if ((old & kLockMask) == 0) {
      if (word_.compare_exchange_weak(old, old | kContended, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return;
      }
      continue;
    }
    if ((old & kLockMask) == kLocked) {
      const std::uint32_t marked = (old & ~kLockMask) | kContended;
      if (!word_.compare_exchange_weak(old, marked, std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
        continue;
      }
      old = marked;
    }
    // Sleeps while the word is still `old` (returns at once if it changed: a flag under the
    // holder, or the release).
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word_), FUTEX_WAIT_PRIVATE, old, nullptr,
            nullptr, 0);
    old = word_.load(std::memory_order_relaxed);
  }
}

void TurnWord::Wake() noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word_), FUTEX_WAKE_PRIVATE, 1, nullptr,
          nullptr, 0);
}

}  // namespace plexus::exec_internal
