// Message-router benchmarks: a MessageRouter with 32 typed routes beside a plain subscription
// that receives the very same messages, in the same binary and run, so that the two read as a
// ratio (target: the router within 1.15x of the plain subscription's deliveries/s).
//
// Rows (one publisher, the benchmark thread, publishing one new message per iteration on one
// topic with one receiver; the messages cycle over 32 types with one payload type):
//   BM_Router_Plain_{Pool,Dedicated,Sync}     a subscription (no filter) whose callback counts
//                                             every message of those types.
//   BM_Router_32Routes_{Pool,Dedicated,Sync}  a router with a typed route per type (so its
//                                             subscription filters on 32 types), each route
//                                             counting into one counter.
// items/s = deliveries/s. Conventions as bench/bus_benchmark.cc: real time; the publisher
// stays within kWindow messages of its receiver; warm-up before the timed loop; the last
// iteration waits until every message was delivered; the pool has hardware_concurrency()
// threads; congestion alerts are set far above the window.

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "plexus/bus/bus.h"
#include "plexus/core/ref.h"
#include "plexus/exec/thread_pool.h"

namespace {

using plexus::DeliveryMode;
using plexus::Message;
using plexus::MessageRouter;
using plexus::Ref;
using plexus::Subscription;
using plexus::SubscriptionOptions;
using plexus::ThreadPool;
using plexus::Topic;

constexpr std::int64_t kWindow = 8192;
constexpr std::int64_t kThrottleEvery = 256;
constexpr std::int64_t kWarmupMessages = 2 * kWindow;
constexpr double kMinTime = 0.3;  // seconds per repetition, per row
constexpr int kRoutes = 32;

struct RouterBenchEvent {
  std::int64_t seq = 0;
  std::int64_t sent_ns = 0;
};
using RouterBenchType = plexus::TypedMessageType<RouterBenchEvent>;

const std::array<RouterBenchType, kRoutes>& RouterBenchTypes() {
  static const std::array<RouterBenchType, kRoutes> types = [] {
    std::array<RouterBenchType, kRoutes> made;
    for (int i = 0; i < kRoutes; ++i) {
      made[static_cast<std::size_t>(i)] =
          RouterBenchType::Create("RouterBenchEvent." + std::to_string(i));
    }
    return made;
  }();
  return types;
}

// Written only by the receiver's (serialized) callbacks.
struct alignas(64) Delivered {
  std::atomic<std::int64_t> n{0};
  void Bump() noexcept {
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  std::int64_t Get() const noexcept { return n.load(std::memory_order_acquire); }
};

enum class Receiver { kPlain, kRouter };

void RunRouterRow(benchmark::State& state, DeliveryMode mode, Receiver receiver) {
  const auto& types = RouterBenchTypes();
  Ref<ThreadPool> pool;
  SubscriptionOptions options;
  options.mode = mode;
  if (mode == DeliveryMode::kPool) {
    const unsigned hardware = std::thread::hardware_concurrency();
    pool =
        ThreadPool::Create({.name = "bench-router", .initial_size = hardware < 2 ? 2 : hardware});
    options.pool = pool;
  }
  options.high_water = 1u << 30;
  options.low_water = 1u << 29;

  Ref<Topic> topic = Topic::Create("bench/router");
  Delivered delivered;
  Subscription plain;
  MessageRouter router;
  if (receiver == Receiver::kPlain) {
    const plexus::MessageType* first = types.front().get();
    const std::uint32_t first_id = first->Id();
    plain = plexus::Subscribe(
        topic,
        [&delivered, first_id](const Message& m) {
          // The same test a typed callback makes, so both sides touch the payload's type.
          if (m.Type().Id() - first_id < static_cast<std::uint32_t>(kRoutes)) delivered.Bump();
        },
        options);
  } else {
    router = MessageRouter::Create(topic, options);
    for (const RouterBenchType& type : types) {
      router.AddRoute(type,
                      [&delivered](const RouterBenchEvent&, const Message&) { delivered.Bump(); });
    }
  }

  std::int64_t published = 0;
  const auto publish_one = [&] {
    topic->Publish(types[static_cast<std::size_t>(published % kRoutes)],
                   RouterBenchEvent{published, 0});
    ++published;
    if (published % kThrottleEvery == 0) {
      while (published - delivered.Get() > kWindow) std::this_thread::yield();
    }
  };
  const auto wait_all = [&] {
    while (delivered.Get() < published) std::this_thread::yield();
  };

  for (std::int64_t i = 0; i < kWarmupMessages; ++i) publish_one();
  wait_all();
  const std::int64_t first = published;
  std::int64_t left = static_cast<std::int64_t>(state.max_iterations);
  for (auto _ : state) {
    publish_one();
    if (--left == 0) wait_all();
  }
  state.SetItemsProcessed(published - first);
  if (delivered.Get() != published) state.SkipWithError("deliveries != messages published");

  if (plain) plain.UnsubscribeAndJoin();
  if (router) router.UnsubscribeAndJoin();
  if (pool) pool->Shutdown();
}

void BM_Router_Plain_Pool(benchmark::State& state) {
  RunRouterRow(state, DeliveryMode::kPool, Receiver::kPlain);
}
void BM_Router_32Routes_Pool(benchmark::State& state) {
  RunRouterRow(state, DeliveryMode::kPool, Receiver::kRouter);
}
void BM_Router_Plain_Dedicated(benchmark::State& state) {
  RunRouterRow(state, DeliveryMode::kDedicatedThread, Receiver::kPlain);
}
void BM_Router_32Routes_Dedicated(benchmark::State& state) {
  RunRouterRow(state, DeliveryMode::kDedicatedThread, Receiver::kRouter);
}
void BM_Router_Plain_Sync(benchmark::State& state) {
  RunRouterRow(state, DeliveryMode::kSynchronous, Receiver::kPlain);
}
void BM_Router_32Routes_Sync(benchmark::State& state) {
  RunRouterRow(state, DeliveryMode::kSynchronous, Receiver::kRouter);
}

}  // namespace

BENCHMARK(BM_Router_Plain_Pool)->MinTime(kMinTime)->UseRealTime();
BENCHMARK(BM_Router_32Routes_Pool)->MinTime(kMinTime)->UseRealTime();
BENCHMARK(BM_Router_Plain_Dedicated)->MinTime(kMinTime)->UseRealTime();
BENCHMARK(BM_Router_32Routes_Dedicated)->MinTime(kMinTime)->UseRealTime();
BENCHMARK(BM_Router_Plain_Sync)->MinTime(kMinTime)->UseRealTime();
BENCHMARK(BM_Router_32Routes_Sync)->MinTime(kMinTime)->UseRealTime();
