// A latency histogram with bounded memory: buckets of 1/16 of a power of two (about 6%
// resolution), from 1 ns to about 69 s. Written by one thread at a time (a subscription's
// callbacks), read once they are joined.

#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace sim {

class LatencyHistogram {
 public:
  void Add(std::int64_t ns) {
    const auto v = static_cast<std::uint64_t>(ns < 1 ? 1 : ns);
    ++counts_[Bucket(v)];
    ++samples_;
    if (v > max_) max_ = v;
  }
  std::uint64_t Samples() const { return samples_; }
  std::uint64_t MaxNanos() const { return max_; }

  // The value below which a fraction `p` of the samples lie (the bucket's upper edge).
  std::uint64_t PercentileNanos(double p) const {
    if (samples_ == 0) return 0;
    const auto want = static_cast<std::uint64_t>(p * static_cast<double>(samples_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      seen += counts_[b];
      if (seen >= want) return UpperEdge(b) < max_ ? UpperEdge(b) : max_;
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 4;
  static constexpr std::size_t kBuckets = 36 << kSubBits;

  static std::size_t Bucket(std::uint64_t v) {
    if (v < (1u << kSubBits)) return static_cast<std::size_t>(v);
    const int exponent = std::bit_width(v) - 1 - kSubBits;  // >= 0
    const std::uint64_t mantissa = (v >> exponent) & ((1u << kSubBits) - 1);
    const std::size_t b = (static_cast<std::size_t>(exponent + 1) << kSubBits) + mantissa;
    return b < kBuckets ? b : kBuckets - 1;
  }
  static std::uint64_t UpperEdge(std::size_t b) {
    if (b < (1u << kSubBits)) return b;
    const int exponent = static_cast<int>(b >> kSubBits) - 1;
    const std::uint64_t mantissa = (b & ((1u << kSubBits) - 1)) | (1u << kSubBits);
    return ((mantissa + 1) << exponent) - 1;
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t samples_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace sim
