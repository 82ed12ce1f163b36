// FastWallClock: a thread's readings never go back, and they stay close to
// system_clock (the bound is a correctness bound on the interpolation, far above its real
// error, not a speed threshold).

#include "plexus/core/clock.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace {

using plexus::FastWallClock;
using plexus::WallClock;

std::int64_t SystemNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(WallClock::now().time_since_epoch())
      .count();
}

TEST(FastWallClock, NeverGoesBackOnOneThread) {
  std::int64_t previous = FastWallClock::NowNanos();
  // Long enough to cross many re-anchoring points (about one per millisecond).
  const std::int64_t until = SystemNanos() + 20'000'000;
  std::uint64_t reads = 0;
  while (SystemNanos() < until) {
    const std::int64_t now = FastWallClock::NowNanos();
    ASSERT_GE(now, previous) << "after " << reads << " reads";
    previous = now;
    ++reads;
  }
}

TEST(FastWallClock, StaysCloseToTheSystemClock) {
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t before = SystemNanos();
    const std::int64_t fast = FastWallClock::NowNanos();
    const std::int64_t after = SystemNanos();
    // Within a millisecond either way: the interpolation's error is far smaller.
    EXPECT_GT(fast, before - 1'000'000);
    EXPECT_LT(fast, after + 1'000'000);
  }
}

TEST(FastWallClock, NeverGoesBackOnManyThreads) {
  // Each thread's readings are ordered even while threads migrate between CPUs whose counters
  // may differ a little.
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::int64_t previous = 0;
      for (int i = 0; i < 200000; ++i) {
        const std::int64_t now = FastWallClock::NowNanos();
        if (now < previous) violations.fetch_add(1, std::memory_order_relaxed);
        previous = now;
        if (i % 1000 == 0) std::this_thread::yield();  // invite migrations
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
}

TEST(FastWallClock, TimePointMatchesNanos) {
  const std::int64_t a = FastWallClock::NowNanos();
  const auto tp = FastWallClock::now();
  const std::int64_t b = FastWallClock::NowNanos();
  const std::int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
  EXPECT_LE(a, ns);
  EXPECT_LE(ns, b);
}

}  // namespace
