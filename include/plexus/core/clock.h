// -----------------------------------------------------------------------------
// plexus/core/clock.h
// -----------------------------------------------------------------------------
//
// The clocks plexus timestamps with. MonotonicClock is std::chrono::steady_clock (vDSO, a few
// nanoseconds per read on Linux); WallClock is system_clock for timestamps shown to people.
//
// FastWallClock reads the wall clock for the price of a cycle-counter read: it interpolates
// system_clock with the CPU's invariant time-stamp counter and re-anchors about every
// millisecond, as absl::Now does. Its readings never go backwards on one thread (across
// threads, by at most the skew between CPUs' counters and the reordering of an unfenced
// counter read: well under a microsecond), stay within
// a few microseconds of system_clock (a forward step of the system clock is followed at the
// next anchor; a backward step is absorbed by running slower until it is caught up), and cost
// about a third of a system_clock read. Where the CPU has no invariant counter it is
// system_clock. Bus messages are stamped with it: compare their timestamps with
// FastWallClock::now(), not with system_clock, when the order of nearby instants matters.
//
// Thread safety: thread-safe.

#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace plexus {

using MonotonicClock = std::chrono::steady_clock;
using WallClock = std::chrono::system_clock;

inline std::int64_t MonotonicNanos() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             MonotonicClock::now().time_since_epoch())
      .count();
}

namespace core_internal {
// The current anchor of FastWallClock, published under a sequence lock.
struct FastClockAnchor {
  std::atomic<std::uint64_t> seq{0};  // odd while an update is being written
  std::atomic<std::uint64_t> tsc{0};
  std::atomic<std::int64_t> wall_ns{0};
  std::atomic<std::uint64_t> ns_per_tick_q32{0};  // 0: not anchored yet, or no usable counter
  std::atomic<std::uint64_t> refresh_ticks{0};
};
extern FastClockAnchor fast_clock_anchor;
std::int64_t FastWallNanosSlow() noexcept;

inline std::uint64_t ReadCycleCounter() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  // Not fenced: a fence would double the cost, and the per-thread clamp of FastWallClock keeps
  // each thread's readings ordered anyway.
  return __builtin_ia32_rdtsc();
#else
  return 0;
#endif
}
}  // namespace core_internal

struct FastWallClock {
  using duration = WallClock::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = WallClock::time_point;
  static constexpr bool is_steady = false;

  // Nanoseconds since the Unix epoch. Out of line: its per-thread state then has the cheapest
  // thread-local access whatever the caller is compiled as.
  static std::int64_t NowNanos() noexcept;

  static time_point now() noexcept {
    return time_point(std::chrono::duration_cast<duration>(std::chrono::nanoseconds(NowNanos())));
  }
};

}  // namespace plexus
