#include "plexus/core/clock.h"

#include <algorithm>
#include <mutex>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace plexus::core_internal {

FastClockAnchor fast_clock_anchor;

namespace {

constexpr std::int64_t kAnchorIntervalNs = 1'000'000;  // re-anchor about every millisecond
constexpr std::int64_t kCalibrationNs = 50'000;        // the first scale estimate's baseline

std::int64_t SystemNanos() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(WallClock::now().time_since_epoch())
      .count();
}

bool HasInvariantCounter() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(0x80000007, &a, &b, &c, &d) != 0 && ((d >> 8) & 1) != 0;
#else
  return false;
#endif
}

// Written under Mutex() only.
struct Calibration {
  bool started = false;
  std::uint64_t first_tsc = 0;
  std::int64_t first_mono = 0;
};

std::mutex& Mutex() {
  static auto* mu = new std::mutex();
  return *mu;
}

Calibration& Cal() {
  static Calibration cal;
  return cal;
}

void Publish(std::uint64_t tsc, std::int64_t wall, double ns_per_tick, double slope) {
  FastClockAnchor& a = fast_clock_anchor;
  const std::uint64_t seq = a.seq.load(std::memory_order_relaxed);
  a.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  a.tsc.store(tsc, std::memory_order_relaxed);
  a.wall_ns.store(wall, std::memory_order_relaxed);
  a.ns_per_tick_q32.store(static_cast<std::uint64_t>(slope * 4294967296.0),
                          std::memory_order_relaxed);
  a.refresh_ticks.store(static_cast<std::uint64_t>(kAnchorIntervalNs / ns_per_tick),
                        std::memory_order_relaxed);
  a.seq.store(seq + 2, std::memory_order_release);
}

}  // namespace

std::int64_t FastWallNanosSlow() noexcept {
  static const bool usable = HasInvariantCounter();
  if (!usable) return SystemNanos();
  std::lock_guard lock(Mutex());
  FastClockAnchor& a = fast_clock_anchor;
  Calibration& cal = Cal();
  const std::uint64_t tsc = ReadCycleCounter();
  const std::uint64_t base = a.tsc.load(std::memory_order_relaxed);
  const std::int64_t wall = a.wall_ns.load(std::memory_order_relaxed);
  const std::uint64_t scale = a.ns_per_tick_q32.load(std::memory_order_relaxed);
  if (cal.started && tsc < base) return wall;  // read before the anchor we now see: never back
  if (cal.started && tsc - base < a.refresh_ticks.load(std::memory_order_relaxed)) {
    // Another thread re-anchored meanwhile.
    return wall + static_cast<std::int64_t>(((tsc - base) * scale) >> 32);
  }
  if (!cal.started) {
    // First use: estimate the counter's rate over a short baseline.
    cal.first_tsc = ReadCycleCounter();
    cal.first_mono = MonotonicNanos();
    while (MonotonicNanos() - cal.first_mono < kCalibrationNs) {
    }
    cal.started = true;
    const std::uint64_t now_tsc = ReadCycleCounter();
    const double ns_per_tick = static_cast<double>(MonotonicNanos() - cal.first_mono) /
                               static_cast<double>(now_tsc - cal.first_tsc);
    const std::int64_t now_wall = SystemNanos();
    Publish(now_tsc, now_wall, ns_per_tick, ns_per_tick);
    return now_wall;
  }
  // Re-anchor. The rate comes from the whole life of the process (a long baseline, so an
  // accurate one); the anchor's value is the system clock, or the old line's prediction if that
  // is later (readings never go back). While ahead of the system clock, the line runs slower
  // until it caught up.
  const std::int64_t mono = MonotonicNanos();
  const std::int64_t sys = SystemNanos();
  const double ns_per_tick =
      static_cast<double>(mono - cal.first_mono) / static_cast<double>(tsc - cal.first_tsc);
  const auto predicted = static_cast<std::int64_t>(
      wall + static_cast<double>(tsc - base) * (static_cast<double>(scale) / 4294967296.0));
  const std::int64_t value = std::max(sys, predicted);
  const double lead = static_cast<double>(value - sys);
  const double slowdown = std::min(lead / static_cast<double>(kAnchorIntervalNs), 0.5);
  Publish(tsc, value, ns_per_tick, ns_per_tick * (1.0 - slowdown));
  return value;
}

}  // namespace plexus::core_internal

namespace plexus {

std::int64_t FastWallClock::NowNanos() noexcept {
  // The counters of two CPUs may be a little apart (the kernel clamps its own readings for the
  // same reason): a thread never reads a time before one it read already.
  __attribute__((tls_model("initial-exec"))) static thread_local std::int64_t last = 0;
  core_internal::FastClockAnchor& a = core_internal::fast_clock_anchor;
  const std::uint64_t tsc = core_internal::ReadCycleCounter();
  const std::uint64_t seq = a.seq.load(std::memory_order_acquire);
  const std::uint64_t base = a.tsc.load(std::memory_order_relaxed);
  const std::int64_t wall = a.wall_ns.load(std::memory_order_relaxed);
  const std::uint64_t scale = a.ns_per_tick_q32.load(std::memory_order_relaxed);
  const std::uint64_t refresh = a.refresh_ticks.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  const std::uint64_t delta = tsc - base;
  std::int64_t now;
  if ((seq & 1) != 0 || a.seq.load(std::memory_order_relaxed) != seq || scale == 0 ||
      delta >= refresh) [[unlikely]] {
    now = core_internal::FastWallNanosSlow();
  } else {
    now = wall + static_cast<std::int64_t>((delta * scale) >> 32);
  }
  if (now < last) return last;
  last = now;
  return now;
}

}  // namespace plexus
