// -----------------------------------------------------------------------------
// plexus/core/clock.h
// -----------------------------------------------------------------------------
//
// The clocks plexus timestamps with. MonotonicClock is std::chrono::steady_clock (vDSO, a few
// nanoseconds per read on Linux); WallClock is system_clock for timestamps shown to people.
//
// Thread safety: thread-safe.

#pragma once

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

}  // namespace plexus
