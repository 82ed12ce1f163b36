// What the bus's benchmark files share, so that their rows are run under one set of rules and
// read as ratios of each other: the publisher's window and throttle, the warm-up, the payload
// of every message, a subscriber's delivery counter, the pool size and the subscription options.
// bench/bus_benchmark.cc's file comment states the conventions these implement.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>

#include "plexus/bus/subscription.h"
#include "plexus/core/ref.h"
#include "plexus/exec/thread_pool.h"

namespace plexus_bench {

// The publisher never runs more than kWindow messages ahead of its slowest subscriber; it
// checks every kThrottleEvery messages (a check reads every subscriber's counter).
inline constexpr std::int64_t kWindow = 8192;
inline constexpr std::int64_t kThrottleEvery = 256;
// Published and waited for before the timed loop, so the queues' recycled segments have grown
// and the subscribe notices are handled.
inline constexpr std::int64_t kWarmupMessages = 2 * kWindow;

// The payload of every benchmark message: a sequence number and, for the latency rows, the
// MonotonicNanos() at which the publisher was about to create and publish it.
struct BenchEvent {
  std::int64_t seq = 0;
  std::int64_t sent_ns = 0;
};

// One subscriber's count of deliveries, written only by its (serialized) callback; a cache
// line of its own, so the publisher's reads do not disturb another subscriber's writes.
struct alignas(64) DeliveryCounter {
  std::atomic<std::int64_t> n{0};
  void Bump() noexcept {
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  std::int64_t Get() const noexcept { return n.load(std::memory_order_acquire); }
};

// Threads of a benchmark's own pool: the hardware's, and at least two, so a publisher and a
// subscriber can run at once even on one core.
inline std::size_t PoolThreads() {
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware < 2 ? 2 : hardware;
}

// Subscription options of every throughput row: `pool` for kPool, and congestion alerts far
// above the window (the rows measure delivery, not the alert log line).
inline plexus::SubscriptionOptions BenchOptions(plexus::DeliveryMode mode,
                                                const plexus::Ref<plexus::ThreadPool>& pool) {
  plexus::SubscriptionOptions options;
  options.mode = mode;
  if (mode == plexus::DeliveryMode::kPool) options.pool = pool;
  options.high_water = 1u << 30;
  options.low_water = 1u << 29;
  return options;
}

}  // namespace plexus_bench
