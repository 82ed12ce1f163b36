// Bus-layer benchmarks: plexus's message bus beside the anchors it is judged against —
// a bare moodycamel::ConcurrentQueue hand-off (the floor an asynchronous delivery cannot go
// below) and a Boost.Signals2 signal (the synchronous mode's peer) — in the same binary and run,
// and beside Asterisk's published figures (bench/README.md; nothing here computes ratios).
//
// Rows:
//   BM_Bus_Fanout_Pool/{1,4,16}       One publisher (the benchmark thread) publishes one new
//   BM_Bus_Fanout_Dedicated/{1,4,16}  message per iteration on one topic with k subscriptions,
//   BM_Bus_Fanout_Sync/{1,4,16}       each counting the deliveries of the benchmark's type.
//                                     Pool: serializers on a pool of hardware_concurrency()
//                                     threads; Dedicated: a thread per subscription; Sync: on
//                                     the publisher's thread. items/s = deliveries/s (messages x
//                                     k); msgs_per_s = messages/s (Asterisk's table quotes both).
//     anchor (Pool, Dedicated): BM_MoodycamelQueue_Handoff  pointers handed from the benchmark
//                                     thread to one consumer thread spinning on dequeue_bulk.
//     anchor (Sync): BM_Signals2_Fanout/{1,4,16}  a boost::signals2::signal with k counting
//                                     slots, emitting one pre-made message per iteration; and
//                                     BM_Bus_Fanout_SyncPremade/{1,4,16}, the synchronous bus
//                                     publishing one pre-made message, like for like with it.
//   BM_Bus_MakeMessage                TypedMessageType<T>::Make alone (what the next row spends
//                                     on creating the message).
//   BM_Bus_PublishNoSubscribers       Create a message and publish it on a topic that has no
//                                     subscription and no forward (target <= 30 ns).
//   BM_Bus_Forward                    Publish on a child topic forwarded (ForwardAll) into a
//   BM_Bus_Forward_Sync               parent with one subscription (pool; synchronous, which
//                                     measures the forward path rather than the queue).
//   BM_Bus_Latency_Pool               One message at a time to one subscription; the callback
//   BM_Bus_Latency_Dedicated          records MonotonicNanos() minus the publish instant carried
//                                     in the payload; the publisher spins until it arrived
//                                     before publishing the next. Counters median_ns, p99_ns,
//                                     p999_ns over every sample of the run.
//   BM_Bus_Memory                     10 000 topics and 100 000 pool subscriptions (10 per topic)
//                                     on a pool of hardware_concurrency() threads (one
//                                     iteration, timed: the creation). bytes_per_topic and
//                                     bytes_per_subscription are the net heap growth through
//                                     operator new (usable block sizes), threads_before/after
//                                     the entries of /proc/self/task.
//
// Conventions shared by the rows:
//   * Every row uses real time. The throughput rows wait, inside the last iteration, until
//     every subscriber has received every message, so items/s is end-to-end.
//   * The publisher never runs more than kWindow messages ahead of its slowest subscriber (it
//     checks every kThrottleEvery messages and yields): queues stay bounded, as in a server
//     that is not overloaded, and steady state is what is measured. Before the timed loop each
//     row publishes 2 x kWindow messages and waits for them, so the queues' recycled segments
//     have grown and the subscribe notices are handled.
//   * Congestion alerts are set far above the window (high_water 2^30): the rows measure
//     delivery, not the alert log line.
//   * allocs_per_msg and allocs_per_delivery: operator new calls (any thread) during the
//     timed loop per message published and per delivery. Both targets are 0: a message's block
//     and a queue's segments come from the bus's recycled blocks, so in steady state neither a
//     message nor a subscriber's share of it allocates.
//   * cpu_ns_per_delivery: process CPU time (all threads, CLOCK_PROCESS_CPUTIME_ID) over the
//     timed loop per delivery; the hand-off row reports the same per pointer, so the two read
//     as the "CPU per delivery within 3x of the bare queue" ratio. Idle workers that spin
//     before sleeping are counted: that is CPU the bus costs.
//   * Every row unsubscribes and joins its subscriptions, cancels its forwards and shuts its
//     pool down before it returns; nothing outlives the row.

#include <benchmark/benchmark.h>
#include <concurrentqueue/concurrentqueue.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <boost/signals2/signal.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "alloc_counter.h"
#include "bus_bench_support.h"
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

using plexus_bench::BenchEvent;
using plexus_bench::BenchOptions;
using plexus_bench::DeliveryCounter;
using plexus_bench::kThrottleEvery;
using plexus_bench::kWarmupMessages;
using plexus_bench::kWindow;
using plexus_bench::PoolThreads;

constexpr double kThroughputMinTime = 0.3;  // seconds per repetition, per row
constexpr int kLatencySamples = 50'000;
constexpr int kMemoryTopics = 10'000;
constexpr int kMemorySubscriptionsPerTopic = 10;

const plexus::TypedMessageType<BenchEvent>& BenchEventType() {
  static const auto type = plexus::TypedMessageType<BenchEvent>::Create("BenchEvent");
  return type;
}

inline void SpinPause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::int64_t ProcessCpuNanos() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t ThreadCount() {
  std::error_code ec;
  std::int64_t n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/task", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++n;
  }
  return n;
}

std::int64_t Slowest(const std::vector<DeliveryCounter>& counters) {
  std::int64_t least = std::numeric_limits<std::int64_t>::max();
  for (const DeliveryCounter& c : counters) least = std::min(least, c.Get());
  return least;
}

// Yields until every counter has reached `target`.
void WaitAll(const std::vector<DeliveryCounter>& counters, std::int64_t target) {
  while (Slowest(counters) < target) std::this_thread::yield();
}

// Keeps the publisher within kWindow messages of the slowest subscriber.
void Throttle(const std::vector<DeliveryCounter>& counters, std::int64_t published) {
  while (published - Slowest(counters) > kWindow) std::this_thread::yield();
}

// Subscribes a callback that counts the benchmark type's messages into `counter` (notices and
// the final message are not counted).
Subscription SubscribeCounting(const Ref<Topic>& topic, DeliveryCounter* counter, DeliveryMode mode,
                               const Ref<ThreadPool>& pool) {
  const plexus::MessageType* type = BenchEventType().get();
  return plexus::Subscribe(
      topic,
      [counter, type](const Message& m) {
        if (&m.Type() == type) counter->Bump();
      },
      BenchOptions(mode, pool));
}

void UnsubscribeAndJoinAll(std::vector<Subscription>& subscriptions) {
  for (Subscription& s : subscriptions) s.Unsubscribe();
  for (Subscription& s : subscriptions) s.Join();
  subscriptions.clear();
}

// Counters shared by the throughput rows.
void ReportThroughput(benchmark::State& state, std::int64_t messages, std::int64_t deliveries,
                      std::uint64_t allocations, std::int64_t cpu_ns) {
  const auto m = static_cast<double>(messages);
  const auto d = static_cast<double>(deliveries);
  const auto a = static_cast<double>(allocations);
  state.SetItemsProcessed(deliveries);
  state.counters["msgs_per_s"] = benchmark::Counter(m, benchmark::Counter::kIsRate);
  state.counters["allocs_per_msg"] = a / m;
  state.counters["allocs_per_delivery"] = a / d;
  state.counters["cpu_ns_per_delivery"] = static_cast<double>(cpu_ns) / d;
}

// -----------------------------------------------------------------------------
// Fan-out: one publisher, one topic (or a chain of forwards), k subscriptions
// -----------------------------------------------------------------------------

struct FanoutSetup {
  int subscribers = 1;
  DeliveryMode mode = DeliveryMode::kPool;
  int forward_hops = 0;  // topics between the published one and the subscribed one
  bool premade = false;  // publish one message made before the loop (like the Signals2 row)
};

void RunFanout(benchmark::State& state, const FanoutSetup& setup) {
  const auto& type = BenchEventType();
  Ref<ThreadPool> pool;
  if (setup.mode == DeliveryMode::kPool) {
    pool = ThreadPool::Create({.name = "bench-bus", .initial_size = PoolThreads()});
  }
  std::vector<Ref<Topic>> topics;
  topics.push_back(Topic::Create("bench/fanout"));
  std::vector<plexus::Forward> forwards;
  for (int i = 0; i < setup.forward_hops; ++i) {
    topics.push_back(Topic::Create("bench/fanout-parent"));
    forwards.push_back(plexus::ForwardAll(topics[topics.size() - 2], topics.back()));
  }
  const Ref<Topic>& publish_on = topics.front();
  const Ref<Topic>& subscribe_on = topics.back();

  std::vector<DeliveryCounter> counters(static_cast<std::size_t>(setup.subscribers));
  std::vector<Subscription> subscriptions;
  for (DeliveryCounter& counter : counters) {
    subscriptions.push_back(SubscribeCounting(subscribe_on, &counter, setup.mode, pool));
    if (!subscriptions.back()) {
      state.SkipWithError("Subscribe failed");
      return;
    }
  }

  const Ref<Message> premade = type.Make(BenchEvent{});
  std::int64_t published = 0;
  const auto publish_one = [&] {
    if (setup.premade) {
      publish_on->Publish(premade);
    } else {
      publish_on->Publish(type, BenchEvent{published, 0});
    }
    ++published;
    if (published % kThrottleEvery == 0) Throttle(counters, published);
  };

  for (std::int64_t i = 0; i < kWarmupMessages; ++i) publish_one();
  WaitAll(counters, published);

  const std::int64_t first = published;
  std::int64_t left = static_cast<std::int64_t>(state.max_iterations);
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  const std::int64_t cpu_before = ProcessCpuNanos();
  for (auto _ : state) {
    publish_one();
    if (--left == 0) WaitAll(counters, published);
  }
  const std::int64_t cpu_ns = ProcessCpuNanos() - cpu_before;
  const std::uint64_t allocations = plexus_bench::AllocationCount() - allocations_before;
  const std::int64_t messages = published - first;
  ReportThroughput(state, messages, messages * setup.subscribers, allocations, cpu_ns);

  for (const DeliveryCounter& c : counters) {
    if (c.Get() != published) {
      state.SkipWithError("a subscriber received more or fewer messages than were published");
      break;
    }
  }
  UnsubscribeAndJoinAll(subscriptions);
  forwards.clear();
  topics.clear();
  if (pool) pool->Shutdown();
}

void BM_Bus_Fanout_Pool(benchmark::State& state) {
  RunFanout(state, {.subscribers = static_cast<int>(state.range(0)), .mode = DeliveryMode::kPool});
}
void BM_Bus_Fanout_Dedicated(benchmark::State& state) {
  RunFanout(state, {.subscribers = static_cast<int>(state.range(0)),
                    .mode = DeliveryMode::kDedicatedThread});
}
void BM_Bus_Fanout_Sync(benchmark::State& state) {
  RunFanout(state,
            {.subscribers = static_cast<int>(state.range(0)), .mode = DeliveryMode::kSynchronous});
}
void BM_Bus_Fanout_SyncPremade(benchmark::State& state) {
  RunFanout(state, {.subscribers = static_cast<int>(state.range(0)),
                    .mode = DeliveryMode::kSynchronous,
                    .premade = true});
}
void BM_Bus_Forward(benchmark::State& state) {
  RunFanout(state, {.subscribers = 1, .mode = DeliveryMode::kPool, .forward_hops = 1});
}
void BM_Bus_Forward_Sync(benchmark::State& state) {
  RunFanout(state, {.subscribers = 1, .mode = DeliveryMode::kSynchronous, .forward_hops = 1});
}

// -----------------------------------------------------------------------------
// Anchors
// -----------------------------------------------------------------------------

// The floor: a bare lock-free queue hand-off of pointers between two threads, the consumer
// spinning on dequeue_bulk. Same window, warm-up and counters as the bus rows (one "delivery"
// per pointer).
void BM_MoodycamelQueue_Handoff(benchmark::State& state) {
  moodycamel::ConcurrentQueue<void*> queue(static_cast<std::size_t>(4 * kWindow));
  std::vector<DeliveryCounter> consumed(1);
  std::atomic<bool> stop{false};
  std::thread consumer([&queue, &consumed, &stop] {
    moodycamel::ConsumerToken token(queue);
    void* items[64];
    int idle_polls = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::size_t n = queue.try_dequeue_bulk(token, items, 64);
      if (n == 0) {
        // Spin; yield now and then, so that on a small, loaded machine a starved producer
        // gets the core back.
        if (++idle_polls % 1024 == 0) {
          std::this_thread::yield();
        } else {
          SpinPause();
        }
        continue;
      }
      idle_polls = 0;
      benchmark::DoNotOptimize(items[0]);
      consumed[0].n.store(
          consumed[0].n.load(std::memory_order_relaxed) + static_cast<std::int64_t>(n),
          std::memory_order_release);
    }
  });
  moodycamel::ProducerToken token(queue);
  BenchEvent event;
  std::int64_t published = 0;
  const auto hand_off = [&] {
    queue.enqueue(token, &event);
    ++published;
    if (published % kThrottleEvery == 0) Throttle(consumed, published);
  };
  for (std::int64_t i = 0; i < kWarmupMessages; ++i) hand_off();
  WaitAll(consumed, published);

  const std::int64_t first = published;
  std::int64_t left = static_cast<std::int64_t>(state.max_iterations);
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  const std::int64_t cpu_before = ProcessCpuNanos();
  for (auto _ : state) {
    hand_off();
    if (--left == 0) WaitAll(consumed, published);
  }
  const std::int64_t cpu_ns = ProcessCpuNanos() - cpu_before;
  const std::uint64_t allocations = plexus_bench::AllocationCount() - allocations_before;
  const std::int64_t items = published - first;
  state.SetItemsProcessed(items);
  state.counters["allocs_per_item"] = static_cast<double>(allocations) / static_cast<double>(items);
  state.counters["cpu_ns_per_delivery"] = static_cast<double>(cpu_ns) / static_cast<double>(items);
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
}

// The synchronous mode's peer: a Boost.Signals2 signal with k slots, each counting, emitting
// one pre-made plexus message per iteration.
void BM_Signals2_Fanout(benchmark::State& state) {
  const int slots = static_cast<int>(state.range(0));
  std::vector<DeliveryCounter> counters(static_cast<std::size_t>(slots));
  boost::signals2::signal<void(const Message&)> signal;
  for (DeliveryCounter& counter : counters) {
    DeliveryCounter* c = &counter;
    signal.connect([c](const Message&) { c->Bump(); });
  }
  const Ref<Message> message = BenchEventType().Make(BenchEvent{});
  for (int i = 0; i < 1000; ++i) signal(*message);

  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  const std::int64_t cpu_before = ProcessCpuNanos();
  for (auto _ : state) signal(*message);
  const std::int64_t cpu_ns = ProcessCpuNanos() - cpu_before;
  const std::uint64_t allocations = plexus_bench::AllocationCount() - allocations_before;
  const auto messages = static_cast<std::int64_t>(state.iterations());
  const std::int64_t deliveries = messages * slots;
  state.SetItemsProcessed(deliveries);
  state.counters["msgs_per_s"] =
      benchmark::Counter(static_cast<double>(messages), benchmark::Counter::kIsRate);
  state.counters["allocs_per_msg"] =
      static_cast<double>(allocations) / static_cast<double>(messages);
  state.counters["cpu_ns_per_delivery"] =
      static_cast<double>(cpu_ns) / static_cast<double>(deliveries);
  if (Slowest(counters) != messages + 1000) state.SkipWithError("a slot missed an emission");
}

// -----------------------------------------------------------------------------
// Creating and publishing with no subscriber
// -----------------------------------------------------------------------------

void BM_Bus_MakeMessage(benchmark::State& state) {
  const auto& type = BenchEventType();
  std::int64_t seq = 0;
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) {
    Ref<Message> message = type.Make(BenchEvent{seq++, 0});
    benchmark::DoNotOptimize(message.get());
  }
  plexus_bench::ReportAllocationsPerIteration(state, allocations_before);
  state.SetItemsProcessed(state.iterations());
}

void BM_Bus_PublishNoSubscribers(benchmark::State& state) {
  const auto& type = BenchEventType();
  Ref<Topic> topic = Topic::Create("bench/nobody");
  std::int64_t seq = 0;
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) {
    plexus::PublishResult result = topic->Publish(type, BenchEvent{seq++, 0});
    benchmark::DoNotOptimize(result);
  }
  plexus_bench::ReportAllocationsPerIteration(state, allocations_before);
  state.SetItemsProcessed(state.iterations());
}

// -----------------------------------------------------------------------------
// Latency: publish to callback, one message in flight at a time
// -----------------------------------------------------------------------------

double Percentile(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(index, sorted.size() - 1)]);
}

void RunLatency(benchmark::State& state, DeliveryMode mode) {
  const auto& type = BenchEventType();
  Ref<ThreadPool> pool;
  if (mode == DeliveryMode::kPool) {
    pool = ThreadPool::Create({.name = "bench-bus", .initial_size = PoolThreads()});
  }
  Ref<Topic> topic = Topic::Create("bench/latency");
  std::vector<std::int64_t> samples(static_cast<std::size_t>(state.max_iterations), 0);
  std::atomic<std::int64_t> received{0};
  std::vector<Subscription> subscriptions;
  subscriptions.push_back(plexus::Subscribe(
      topic, type,
      [&samples, &received](const BenchEvent& event, const Message&) {
        const std::int64_t now = plexus::MonotonicNanos();
        if (event.seq >= 0) samples[static_cast<std::size_t>(event.seq)] = now - event.sent_ns;
        received.store(received.load(std::memory_order_relaxed) + 1, std::memory_order_release);
      },
      BenchOptions(mode, pool)));
  if (!subscriptions.back()) {
    state.SkipWithError("Subscribe failed");
    return;
  }

  std::int64_t sent = 0;
  const auto round_trip = [&](std::int64_t seq) {
    topic->Publish(type, BenchEvent{seq, plexus::MonotonicNanos()});
    ++sent;
    for (int spins = 0; received.load(std::memory_order_acquire) < sent; ++spins) {
      if (spins < 20'000) {
        SpinPause();
      } else {
        std::this_thread::yield();
      }
    }
  };
  for (int i = 0; i < 1000; ++i) round_trip(-1);  // warm-up, not recorded

  std::int64_t seq = 0;
  for (auto _ : state) round_trip(seq++);

  UnsubscribeAndJoinAll(subscriptions);
  samples.resize(static_cast<std::size_t>(seq));
  std::sort(samples.begin(), samples.end());
  state.counters["median_ns"] = Percentile(samples, 0.5);
  state.counters["p99_ns"] = Percentile(samples, 0.99);
  state.counters["p999_ns"] = Percentile(samples, 0.999);
  state.counters["max_ns"] = samples.empty() ? 0.0 : static_cast<double>(samples.back());
  state.SetItemsProcessed(seq);
  topic = nullptr;
  if (pool) pool->Shutdown();
}

void BM_Bus_Latency_Pool(benchmark::State& state) {
  RunLatency(state, DeliveryMode::kPool);
}
void BM_Bus_Latency_Dedicated(benchmark::State& state) {
  RunLatency(state, DeliveryMode::kDedicatedThread);
}

// -----------------------------------------------------------------------------
// Memory: 100 000 subscriptions on 10 000 topics, no thread per subscription
// -----------------------------------------------------------------------------

void BM_Bus_Memory(benchmark::State& state) {
  Ref<ThreadPool> pool =
      ThreadPool::Create({.name = "bench-bus-mem", .initial_size = PoolThreads()});
  std::atomic<std::int64_t> notices{0};
  std::vector<Ref<Topic>> topics;
  std::vector<Subscription> subscriptions;
  topics.reserve(kMemoryTopics);
  subscriptions.reserve(static_cast<std::size_t>(kMemoryTopics) * kMemorySubscriptionsPerTopic);
  // Each subscription receives its own subscribe notice only (none of them listens to the
  // others' subscription changes).
  constexpr std::int64_t kNoticesPerTopic = kMemorySubscriptionsPerTopic;
  const std::int64_t expected_notices = std::int64_t{kMemoryTopics} * kNoticesPerTopic;

  const std::int64_t threads_before = ThreadCount();
  std::int64_t topic_bytes = 0;
  std::int64_t subscription_bytes = 0;
  std::uint64_t topic_allocations = 0;
  std::uint64_t subscription_allocations = 0;
  plexus_bench::EnableByteCounting(true);
  for (auto _ : state) {
    const std::int64_t bytes0 = plexus_bench::NetAllocatedBytes();
    const std::uint64_t allocations0 = plexus_bench::AllocationCount();
    for (int t = 0; t < kMemoryTopics; ++t) {
      char name[16];
      std::snprintf(name, sizeof name, "m%05d", t);
      topics.push_back(Topic::Create(name));
    }
    const std::int64_t bytes1 = plexus_bench::NetAllocatedBytes();
    const std::uint64_t allocations1 = plexus_bench::AllocationCount();
    SubscriptionOptions options;
    options.pool = pool;
    std::atomic<std::int64_t>* counter = &notices;
    for (const Ref<Topic>& topic : topics) {
      for (int s = 0; s < kMemorySubscriptionsPerTopic; ++s) {
        subscriptions.push_back(plexus::Subscribe(
            topic,
            [counter](const Message&, bool is_final) {
              if (!is_final) counter->fetch_add(1, std::memory_order_relaxed);
            },
            options));
      }
    }
    // Let every subscribe notice be handled (and freed) before measuring what stays; give up
    // (and say so in notices_handled) if they stop coming for a second.
    std::int64_t seen = notices.load(std::memory_order_relaxed);
    auto progress_at = std::chrono::steady_clock::now();
    while (seen < expected_notices &&
           std::chrono::steady_clock::now() - progress_at < std::chrono::seconds(1)) {
      std::this_thread::yield();
      const std::int64_t now_seen = notices.load(std::memory_order_relaxed);
      if (now_seen != seen) {
        seen = now_seen;
        progress_at = std::chrono::steady_clock::now();
      }
    }
    topic_bytes = bytes1 - bytes0;
    subscription_bytes = plexus_bench::NetAllocatedBytes() - bytes1;
    topic_allocations = allocations1 - allocations0;
    subscription_allocations = plexus_bench::AllocationCount() - allocations1;
  }
  plexus_bench::EnableByteCounting(false);
  const std::int64_t threads_after = ThreadCount();
  const auto subscription_count = static_cast<double>(subscriptions.size());
  state.counters["bytes_per_topic"] = static_cast<double>(topic_bytes) / kMemoryTopics;
  state.counters["bytes_per_subscription"] =
      static_cast<double>(subscription_bytes) / subscription_count;
  state.counters["allocs_per_topic"] = static_cast<double>(topic_allocations) / kMemoryTopics;
  state.counters["allocs_per_subscription"] =
      static_cast<double>(subscription_allocations) / subscription_count;
  state.counters["notices_handled"] = static_cast<double>(notices.load(std::memory_order_relaxed)) /
                                      static_cast<double>(expected_notices);
  state.counters["threads_before"] = static_cast<double>(threads_before);
  state.counters["threads_after"] = static_cast<double>(threads_after);
  state.counters["pool_threads"] = static_cast<double>(PoolThreads());
  state.SetItemsProcessed(static_cast<std::int64_t>(subscriptions.size()));

  UnsubscribeAndJoinAll(subscriptions);
  topics.clear();
  pool->Shutdown();
}

// -----------------------------------------------------------------------------
// Registration
// -----------------------------------------------------------------------------

// PLEXUS_BENCH_ITERATIONS=<n> gives the pool and dedicated fan-out and hand-off rows a fixed
// iteration count instead of their minimum time, so that callgrind instruction counts are
// reproducible.
void ThroughputLength(benchmark::internal::Benchmark* b) {
  const char* text = std::getenv("PLEXUS_BENCH_ITERATIONS");
  const long long iterations = text == nullptr ? 0 : std::atoll(text);
  if (iterations > 0) {
    b->Iterations(static_cast<benchmark::IterationCount>(iterations));
  } else {
    b->MinTime(kThroughputMinTime);
  }
}

BENCHMARK(BM_Bus_Fanout_Pool)->Arg(1)->Arg(4)->Arg(16)->UseRealTime()->Apply(ThroughputLength);
BENCHMARK(BM_Bus_Fanout_Dedicated)->Arg(1)->Arg(4)->Arg(16)->UseRealTime()->Apply(ThroughputLength);
BENCHMARK(BM_MoodycamelQueue_Handoff)->UseRealTime()->Apply(ThroughputLength);
BENCHMARK(BM_Bus_Fanout_Sync)->Arg(1)->Arg(4)->Arg(16)->MinTime(kThroughputMinTime)->UseRealTime();
BENCHMARK(BM_Bus_Fanout_SyncPremade)
    ->Arg(1)
    ->Arg(4)
    ->Arg(16)
    ->MinTime(kThroughputMinTime)
    ->UseRealTime();
BENCHMARK(BM_Signals2_Fanout)->Arg(1)->Arg(4)->Arg(16)->MinTime(kThroughputMinTime)->UseRealTime();
BENCHMARK(BM_Bus_MakeMessage)->MinTime(kThroughputMinTime)->UseRealTime();
BENCHMARK(BM_Bus_PublishNoSubscribers)->MinTime(kThroughputMinTime)->UseRealTime();
BENCHMARK(BM_Bus_Forward)->MinTime(kThroughputMinTime)->UseRealTime();
BENCHMARK(BM_Bus_Forward_Sync)->MinTime(kThroughputMinTime)->UseRealTime();
BENCHMARK(BM_Bus_Latency_Pool)->Iterations(kLatencySamples)->UseRealTime();
BENCHMARK(BM_Bus_Latency_Dedicated)->Iterations(kLatencySamples)->UseRealTime();
BENCHMARK(BM_Bus_Memory)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
