// LatencyHistogram: percentiles within its bucket resolution, in bounded memory.

#include "gtest/gtest.h"
#include "latency.h"

namespace sim {
namespace {

TEST(LatencyHistogram, EmptyReadsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.Samples(), 0u);
  EXPECT_EQ(h.PercentileNanos(0.99), 0u);
}

TEST(LatencyHistogram, PercentilesWithinOneBucket) {
  LatencyHistogram h;
  for (std::int64_t ns = 1; ns <= 100'000; ++ns) h.Add(ns);
  EXPECT_EQ(h.Samples(), 100'000u);
  EXPECT_EQ(h.MaxNanos(), 100'000u);
  for (double p : {0.5, 0.9, 0.99, 0.999}) {
    const double want = p * 100'000;
    const auto got = static_cast<double>(h.PercentileNanos(p));
    EXPECT_GE(got, want * 0.99) << p;
    EXPECT_LE(got, want * (1 + 1.0 / 16) + 1) << p;
  }
  EXPECT_EQ(h.PercentileNanos(1.0), 100'000u);
}

TEST(LatencyHistogram, SmallAndHugeValuesAreKept) {
  LatencyHistogram h;
  h.Add(-5);  // a clock that stepped: counted as 1 ns
  h.Add(3);
  h.Add(400'000'000'000);  // far beyond the last bucket: counted in it, max exact
  EXPECT_EQ(h.Samples(), 3u);
  EXPECT_EQ(h.PercentileNanos(0.0), 1u);
  EXPECT_EQ(h.MaxNanos(), 400'000'000'000u);
  EXPECT_EQ(h.PercentileNanos(1.0), 400'000'000'000u);
}

}  // namespace
}  // namespace sim
