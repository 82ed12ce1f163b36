// Paced wake-up latency of bus delivery: what an operator feels when a subscriber sits idle
// between sparse messages.
//
//   BM_Bus_PacedLatency_Pool        One subscription delivered on a pool (one thread per
//   BM_Bus_PacedLatency_Dedicated   hardware thread, at least two) or on a dedicated thread.
//                                   One message is in flight at a time; after its callback ran,
//                                   the publisher sleeps 50 us, so the subscriber's thread goes
//                                   idle (spins out its budget, or sleeps) before the next one.
//                                   The timestamp is taken just before the publish; latency is
//                                   the MonotonicNanos() at the start of the callback minus it.
//     anchor: Asterisk's figures with the same method (10 000 messages): median / p99 of
//             5.2 / 59 us (dedicated, idle machine), 6.2 / 267 us (pool, idle), 6.2 / 45 us
//             (dedicated, one core busy), 6.6 / 45 us (pool, one core busy).
//
// Counters: p50_us, p99_us, p999_us and max_us over the 10 000 timed messages (a warm-up of
// 200 paced messages is not recorded). Run it idle and beside a busy core with
// scripts/bench-idle-loaded.sh (make bench-loaded).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "plexus/bus/bus.h"
#include "plexus/core/clock.h"
#include "plexus/core/ref.h"
#include "plexus/exec/thread_pool.h"

namespace {

using plexus::DeliveryMode;
using plexus::Message;
using plexus::Ref;
using plexus::Subscription;
using plexus::SubscriptionOptions;
using plexus::ThreadPool;
using plexus::Topic;

constexpr int kPacedMessages = 10'000;
constexpr int kPacedWarmup = 200;
constexpr auto kPace = std::chrono::microseconds(50);

struct PacedEvent {
  std::int64_t seq = 0;
  std::int64_t sent_ns = 0;
};

const plexus::TypedMessageType<PacedEvent>& PacedEventType() {
  static const auto type = plexus::TypedMessageType<PacedEvent>::Create("PacedEvent");
  return type;
}

double PercentileUs(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(index, sorted.size() - 1)]) / 1000.0;
}

void RunPacedLatency(benchmark::State& state, DeliveryMode mode) {
  const auto& type = PacedEventType();
  Ref<ThreadPool> pool;
  if (mode == DeliveryMode::kPool) {
    const unsigned hardware = std::thread::hardware_concurrency();
    pool = ThreadPool::Create(
        {.name = "bench-paced", .initial_size = hardware < 2 ? 2u : std::size_t{hardware}});
  }
  Ref<Topic> topic = Topic::Create("bench/paced-latency");
  std::vector<std::int64_t> samples(kPacedMessages, 0);
  std::atomic<std::int64_t> received{0};
  SubscriptionOptions options;
  options.mode = mode;
  if (mode == DeliveryMode::kPool) options.pool = pool;
  Subscription subscription = plexus::Subscribe(
      topic, type,
      [&samples, &received](const PacedEvent& event, const Message&) {
        const std::int64_t now = plexus::MonotonicNanos();
        if (event.seq >= 0) samples[static_cast<std::size_t>(event.seq)] = now - event.sent_ns;
        received.store(received.load(std::memory_order_relaxed) + 1, std::memory_order_release);
      },
      options);
  if (!subscription) {
    state.SkipWithError("Subscribe failed");
    return;
  }

  std::int64_t sent = 0;
  // The publisher waits for the callback by yielding (it must not hold a core the subscriber
  // needs), then sleeps for the pace, so that the subscriber's thread goes idle.
  const auto paced_round = [&](std::int64_t seq) {
    topic->Publish(type, PacedEvent{seq, plexus::MonotonicNanos()});
    ++sent;
    while (received.load(std::memory_order_acquire) < sent) std::this_thread::yield();
    std::this_thread::sleep_for(kPace);
  };
  for (int i = 0; i < kPacedWarmup; ++i) paced_round(-1);

  std::int64_t seq = 0;
  for (auto _ : state) paced_round(seq++);

  subscription.Unsubscribe();
  subscription.Join();
  samples.resize(static_cast<std::size_t>(seq));
  std::sort(samples.begin(), samples.end());
  state.counters["p50_us"] = PercentileUs(samples, 0.5);
  state.counters["p99_us"] = PercentileUs(samples, 0.99);
  state.counters["p999_us"] = PercentileUs(samples, 0.999);
  state.counters["max_us"] = samples.empty() ? 0.0 : static_cast<double>(samples.back()) / 1000.0;
  topic = nullptr;
  if (pool) pool->Shutdown();
}

void BM_Bus_PacedLatency_Pool(benchmark::State& state) {
  RunPacedLatency(state, DeliveryMode::kPool);
}
void BM_Bus_PacedLatency_Dedicated(benchmark::State& state) {
  RunPacedLatency(state, DeliveryMode::kDedicatedThread);
}

}  // namespace

BENCHMARK(BM_Bus_PacedLatency_Pool)->Iterations(kPacedMessages)->UseRealTime();
BENCHMARK(BM_Bus_PacedLatency_Dedicated)->Iterations(kPacedMessages)->UseRealTime();
