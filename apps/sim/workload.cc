#include "workload.h"

#include <algorithm>

namespace sim {
namespace {

// splitmix64: a fixed, portable generator (std::uniform_int_distribution is not the same on
// every standard library, and the workload must be).
struct Rng {
  std::uint64_t state;
  std::uint64_t Next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi].
  std::int64_t Between(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(Next() % static_cast<std::uint64_t>(hi - lo + 1));
  }
};

}  // namespace

CallPlan PlanCall(std::uint64_t seed, std::uint64_t index, std::uint32_t devices,
                  std::chrono::milliseconds mean_talk) {
  Rng rng{seed * 0x100000001B3ull ^ (index + 1) * 0xD6E8FEB86659FD93ull};
  CallPlan plan;
  plan.id = index + 1;
  plan.device = static_cast<std::uint32_t>(rng.Next() % std::max<std::uint32_t>(devices, 1));
  plan.callee = static_cast<std::uint32_t>(2000 + rng.Next() % 8000);
  const std::int64_t roll = rng.Between(0, 99);
  plan.outcome = roll < 75   ? Outcome::kAnswered
                 : roll < 87 ? Outcome::kNoAnswer
                 : roll < 97 ? Outcome::kBusy
                             : Outcome::kNoResponse;
  using std::chrono::microseconds;
  plan.ring_delay = microseconds(rng.Between(1'000, 8'000));
  plan.answer_delay = microseconds(rng.Between(1'000, 20'000));
  const std::int64_t mean_us = std::max<std::int64_t>(mean_talk.count() * 1000, 1);
  plan.talk = microseconds(rng.Between(mean_us / 2, mean_us * 3 / 2));
  plan.response_delay = microseconds(rng.Between(200, 2'000));
  const auto fit = static_cast<std::uint32_t>(plan.talk / kRefreshInterval);
  plan.refreshes =
      std::min<std::uint32_t>({fit, kMaxRefreshes, static_cast<std::uint32_t>(rng.Next() % 4)});
  return plan;
}

}  // namespace sim
