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
// items/s = deliveries/s. Conventions as bench/bus_benchmark.cc (bus_bench_support.h): real time;
// the publisher stays within kWindow messages of its receiver; warm-up before the timed loop; the
// last iteration waits until every message was delivered; the pool has hardware_concurrency()
// threads; congestion alerts are set far above the window.

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "bus_bench_support.h"
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

using plexus_bench::BenchEvent;
using plexus_bench::BenchOptions;
using plexus_bench::DeliveryCounter;
using plexus_bench::kThrottleEvery;
using plexus_bench::kWarmupMessages;
using plexus_bench::kWindow;
using plexus_bench::PoolThreads;

constexpr double kMinTime = 0.3;  // seconds per repetition, per row
constexpr int kRoutes = 32;

using RouterBenchType = plexus::TypedMessageType<BenchEvent>;

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

enum class Receiver { kPlain, kRouter };

void RunRouterRow(benchmark::State& state, DeliveryMode mode, Receiver receiver) {
  const auto& types = RouterBenchTypes();
  Ref<ThreadPool> pool;
  if (mode == DeliveryMode::kPool) {
    pool = ThreadPool::Create({.name = "bench-router", .initial_size = PoolThreads()});
  }
  const SubscriptionOptions options = BenchOptions(mode, pool);

  Ref<Topic> topic = Topic::Create("bench/router");
  DeliveryCounter delivered;
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
      router.AddRoute(type, [&delivered](const BenchEvent&, const Message&) { delivered.Bump(); });
    }
  }

  std::int64_t published = 0;
  const auto publish_one = [&] {
    topic->Publish(types[static_cast<std::size_t>(published % kRoutes)], BenchEvent{published, 0});
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
