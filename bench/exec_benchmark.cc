// Exec-layer benchmarks: plexus::TaskProcessor, ThreadPool and TimerHeap beside the Boost.Asio
// equivalents they are judged against, in the same binary and the same run, so that every result
// reads as a ratio of medians (bench/README.md quotes them; nothing here computes ratios).
//
// Rows and their anchors:
//   BM_TaskProcessor_PushRun        The benchmark thread pushes one task per iteration to one
//                                   task processor on a dedicated one-thread pool; each task
//                                   increments a counter. Throughput, producer to consumer.
//                                   Default options: the producer outruns the consumer, so the
//                                   queue crosses the alert level (500) and logs a warning on
//                                   each crossing; that cost is part of what a user gets.
//     anchor: BM_AsioStrand_PostRun  boost::asio::post to a strand of an io_context run by one
//                                   thread.
//   BM_TaskProcessor_PingPong/200   200 pairs of task processors on one pool (one thread per
//                                   hardware thread): each pair passes a task back and forth (A's
//                                   task pushes to B, B's to A), 100 hops per pair per iteration.
//                                   items/s counts hops (tasks run).
//     anchor: BM_AsioStrand_PingPong/200  the same with 200 pairs of strands on an io_context
//                                   run by as many threads.
//   BM_ThreadPool_Push              The benchmark thread pushes tasks to a one-worker ThreadPool.
//     anchor: BM_AsioThreadPool_Post  boost::asio::post to a boost::asio::thread_pool(1).
//   BM_TaskProcessor_Create_Destroy Create and drop an anonymous task processor on a pool. Also
//                                   reports the memory an idle task processor costs: 10 000 of
//                                   them are created and held outside the timed loop, and
//                                   "bytes/tps" (glibc mallinfo2 uordblks) and "allocs/tps" are
//                                   the heap growth per task processor. No anchor.
//   BM_TimerHeap_ScheduleCancel     Schedule a timer one hour out and cancel it (the heap is
//                                   otherwise empty). No anchor.
//   BM_TimerHeap_Fire/1000000       Per iteration, schedule 1 000 000 timers with deadlines spread
//                                   over the next 100 ms, run on the timer thread (no executor),
//                                   and wait until all fired. items/s counts timers fired.
//
// Conventions shared by the rows:
//   * Every row uses real time (Google Benchmark appends "/real_time" to its name). The
//     producer rows wait for the consumer to run every task inside the last iteration, so the
//     drain is timed: items/s is end-to-end throughput, not the rate at which a queue fills.
//   * "allocs/op" is the number of operator new calls during the timed loop (by any thread) per
//     iteration (per hop in the ping-pong rows, per timer in BM_TimerHeap_Fire); the target for
//     plexus's push paths is 0. Each row warms up first (a few thousand tasks or timers) so the
//     queues' recycled arrays have grown before counting.
//   * Closures capture one or two pointers, so plexus::Task stores them inline; the Asio rows
//     post the same closures.
//   * Every row joins its threads, stops its io_context and drops its task processors, pools
//     and heaps before it returns; nothing outlives the row.

#include <benchmark/benchmark.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "alloc_counter.h"
#include "plexus/core/ref.h"
#include "plexus/exec/task.h"
#include "plexus/exec/task_processor.h"
#include "plexus/exec/thread_pool.h"
#include "plexus/exec/timer_heap.h"

namespace {

using plexus::Ref;
using plexus::TaskProcessor;
using plexus::ThreadPool;
using plexus::TimerHeap;

constexpr int kPingPongPairs = 200;
constexpr int kHopsPerPair = 100;
constexpr int kWarmupTasks = 4096;

// Threads for the ping-pong rows, plexus and Asio alike.
std::size_t PingPongThreads() {
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 2 : hardware;
}

// Yields until `counter` reaches `target` (the consumer has run everything pushed so far).
void YieldUntil(const std::atomic<std::int64_t>& counter, std::int64_t target) {
  while (counter.load(std::memory_order_acquire) < target) std::this_thread::yield();
}

// Blocks (C++20 atomic wait) until `counter` reaches `target`; the thread that makes it reach
// the target notifies.
void WaitUntil(const std::atomic<std::int64_t>& counter, std::int64_t target) {
  for (std::int64_t seen = counter.load(std::memory_order_acquire); seen < target;
       seen = counter.load(std::memory_order_acquire)) {
    counter.wait(seen, std::memory_order_acquire);
  }
}

// Adds one to `counter` and notifies a waiter if that made it reach `target`.
void CountAndNotify(std::atomic<std::int64_t>& counter, std::int64_t target) {
  if (counter.fetch_add(1, std::memory_order_acq_rel) + 1 == target) counter.notify_all();
}

// The producer-to-one-consumer loop shared by the push/post rows: `push(fn)` queues `fn`, whose
// run increments a counter. Warms up, counts allocations over the timed loop, and waits for the
// consumer inside the last iteration so the drain is timed.
template <class PushFn>
void ProducerConsumerLoop(benchmark::State& state, PushFn push) {
  std::atomic<std::int64_t> ran{0};
  auto* counter = &ran;
  const auto increment = [counter] { counter->fetch_add(1, std::memory_order_release); };

  for (int i = 0; i < kWarmupTasks; ++i) push(increment);
  YieldUntil(ran, kWarmupTasks);

  const std::int64_t target = kWarmupTasks + static_cast<std::int64_t>(state.max_iterations);
  std::int64_t left = static_cast<std::int64_t>(state.max_iterations);
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) {
    push(increment);
    if (--left == 0) YieldUntil(ran, target);
  }
  plexus_bench::ReportAllocationsPerIteration(state, allocations_before);
  state.SetItemsProcessed(state.iterations());
}

// -----------------------------------------------------------------------------
// One producer, one serialized consumer
// -----------------------------------------------------------------------------

void BM_TaskProcessor_PushRun(benchmark::State& state) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "bench-pushrun", .initial_size = 1});
  Ref<TaskProcessor> processor = TaskProcessor::Create({.pool = pool});
  ProducerConsumerLoop(state, [&processor](const auto& fn) { processor->Push(fn); });
  processor = nullptr;  // drains (already empty) and waits for a running turn
  pool->Shutdown();
}

void BM_AsioStrand_PostRun(benchmark::State& state) {
  boost::asio::io_context context(1);
  auto guard = boost::asio::make_work_guard(context);
  std::thread runner([&context] { context.run(); });
  auto strand = boost::asio::make_strand(context);
  ProducerConsumerLoop(state, [&strand](const auto& fn) { boost::asio::post(strand, fn); });
  guard.reset();
  context.stop();
  runner.join();
}

// -----------------------------------------------------------------------------
// Ping-pong between pairs of serializers
// -----------------------------------------------------------------------------

struct TaskProcessorPair {
  Ref<TaskProcessor> a;
  Ref<TaskProcessor> b;
  int hops_left = 0;  // touched only by the pair's tasks, which are serialized by the hand-off
  std::atomic<std::int64_t>* finished = nullptr;  // pairs done this round
  std::int64_t pair_count = 0;
};

void TaskProcessorHop(TaskProcessorPair* pair, bool on_a) {
  if (--pair->hops_left == 0) {
    CountAndNotify(*pair->finished, pair->pair_count);
    return;
  }
  TaskProcessor& next = on_a ? *pair->b : *pair->a;
  next.Push([pair, on_a] { TaskProcessorHop(pair, !on_a); });
}

void BM_TaskProcessor_PingPong(benchmark::State& state) {
  const int pair_count = static_cast<int>(state.range(0));
  std::atomic<std::int64_t> finished{0};
  Ref<ThreadPool> pool =
      ThreadPool::Create({.name = "bench-pingpong", .initial_size = PingPongThreads()});
  std::vector<TaskProcessorPair> pairs(static_cast<std::size_t>(pair_count));
  for (TaskProcessorPair& pair : pairs) {
    pair.a = TaskProcessor::Create({.pool = pool});
    pair.b = TaskProcessor::Create({.pool = pool});
    pair.finished = &finished;
    pair.pair_count = pair_count;
  }
  const auto round = [&] {
    finished.store(0, std::memory_order_relaxed);
    for (TaskProcessorPair& pair : pairs) {
      pair.hops_left = kHopsPerPair;
      TaskProcessorPair* p = &pair;
      pair.a->Push([p] { TaskProcessorHop(p, true); });
    }
    WaitUntil(finished, pair_count);
  };

  round();  // warm-up: the queues' arrays grow here, not in the timed loop
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) round();
  const double hops = static_cast<double>(state.iterations()) * pair_count * kHopsPerPair;
  state.counters["allocs/op"] =
      static_cast<double>(plexus_bench::AllocationCount() - allocations_before) / hops;
  state.SetItemsProcessed(static_cast<std::int64_t>(hops));

  pairs.clear();  // drops every task processor (all idle: the last round finished)
  pool->Shutdown();
}

using AsioStrand = boost::asio::strand<boost::asio::io_context::executor_type>;

struct AsioStrandPair {
  AsioStrandPair(AsioStrand sa, AsioStrand sb) : a(std::move(sa)), b(std::move(sb)) {}
  AsioStrand a;
  AsioStrand b;
  int hops_left = 0;
  std::atomic<std::int64_t>* finished = nullptr;
  std::int64_t pair_count = 0;
};

void AsioStrandHop(AsioStrandPair* pair, bool on_a) {
  if (--pair->hops_left == 0) {
    CountAndNotify(*pair->finished, pair->pair_count);
    return;
  }
  boost::asio::post(on_a ? pair->b : pair->a, [pair, on_a] { AsioStrandHop(pair, !on_a); });
}

void BM_AsioStrand_PingPong(benchmark::State& state) {
  const int pair_count = static_cast<int>(state.range(0));
  const std::size_t thread_count = PingPongThreads();
  std::atomic<std::int64_t> finished{0};
  boost::asio::io_context context(static_cast<int>(thread_count));
  auto guard = boost::asio::make_work_guard(context);
  std::vector<std::thread> runners;
  for (std::size_t i = 0; i < thread_count; ++i)
    runners.emplace_back([&context] { context.run(); });
  std::vector<std::unique_ptr<AsioStrandPair>> pairs;
  for (int i = 0; i < pair_count; ++i) {
    pairs.push_back(std::make_unique<AsioStrandPair>(boost::asio::make_strand(context),
                                                     boost::asio::make_strand(context)));
    pairs.back()->finished = &finished;
    pairs.back()->pair_count = pair_count;
  }
  const auto round = [&] {
    finished.store(0, std::memory_order_relaxed);
    for (auto& pair : pairs) {
      pair->hops_left = kHopsPerPair;
      AsioStrandPair* p = pair.get();
      boost::asio::post(pair->a, [p] { AsioStrandHop(p, true); });
    }
    WaitUntil(finished, pair_count);
  };

  round();
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) round();
  const double hops = static_cast<double>(state.iterations()) * pair_count * kHopsPerPair;
  state.counters["allocs/op"] =
      static_cast<double>(plexus_bench::AllocationCount() - allocations_before) / hops;
  state.SetItemsProcessed(static_cast<std::int64_t>(hops));

  guard.reset();
  context.stop();
  for (std::thread& runner : runners) runner.join();
  pairs.clear();
}

// -----------------------------------------------------------------------------
// Bare pools, one worker
// -----------------------------------------------------------------------------

void BM_ThreadPool_Push(benchmark::State& state) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "bench-push", .initial_size = 1});
  ProducerConsumerLoop(state, [&pool](const auto& fn) { pool->Push(fn); });
  pool->Shutdown();
}

void BM_AsioThreadPool_Post(benchmark::State& state) {
  boost::asio::thread_pool pool(1);
  ProducerConsumerLoop(state, [&pool](const auto& fn) { boost::asio::post(pool, fn); });
  pool.join();  // no work is left, so the worker exits
}

// -----------------------------------------------------------------------------
// Task processor lifetime and footprint
// -----------------------------------------------------------------------------

std::size_t HeapBytesInUse() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  return mallinfo2().uordblks;
#else
  return 0;
#endif
}

void BM_TaskProcessor_Create_Destroy(benchmark::State& state) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "bench-create", .initial_size = 1});

  // Footprint of idle task processors, outside the timed loop.
  constexpr std::size_t kHeld = 10'000;
  {
    std::vector<Ref<TaskProcessor>> held;
    held.reserve(kHeld);
    const std::size_t bytes_before = HeapBytesInUse();
    const std::uint64_t allocations_before = plexus_bench::AllocationCount();
    for (std::size_t i = 0; i < kHeld; ++i) held.push_back(TaskProcessor::Create({.pool = pool}));
    const std::size_t bytes_after = HeapBytesInUse();
    const std::uint64_t allocations_after = plexus_bench::AllocationCount();
    state.counters["bytes/tps"] =
        (static_cast<double>(bytes_after) - static_cast<double>(bytes_before)) / kHeld;
    state.counters["allocs/tps"] =
        static_cast<double>(allocations_after - allocations_before) / kHeld;
  }

  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) {
    Ref<TaskProcessor> processor = TaskProcessor::Create({.pool = pool});
    benchmark::DoNotOptimize(processor.get());
  }
  plexus_bench::ReportAllocationsPerIteration(state, allocations_before);
  state.SetItemsProcessed(state.iterations());
  pool->Shutdown();
}

// -----------------------------------------------------------------------------
// Timer heap
// -----------------------------------------------------------------------------

void BM_TimerHeap_ScheduleCancel(benchmark::State& state) {
  Ref<TimerHeap> heap = TimerHeap::Create("bench-schedule-cancel");
  std::atomic<std::int64_t> fired{0};
  auto* counter = &fired;
  const auto callback = [counter] { counter->fetch_add(1, std::memory_order_relaxed); };
  constexpr auto kDelay = std::chrono::hours(1);
  for (int i = 0; i < kWarmupTasks; ++i) heap->Cancel(heap->Schedule(kDelay, callback));

  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) {
    plexus::TimerId id = heap->Schedule(kDelay, callback);
    benchmark::DoNotOptimize(heap->Cancel(id));
  }
  plexus_bench::ReportAllocationsPerIteration(state, allocations_before);
  state.SetItemsProcessed(state.iterations());
  if (fired.load() != 0) state.SkipWithError("a cancelled timer fired");
  heap = nullptr;  // stops and joins the timer thread
}

void BM_TimerHeap_Fire(benchmark::State& state) {
  const std::int64_t timer_count = state.range(0);
  Ref<TimerHeap> heap = TimerHeap::Create("bench-fire");
  std::atomic<std::int64_t> fired{0};
  auto* counter = &fired;
  const auto callback = [counter, timer_count] { CountAndNotify(*counter, timer_count); };
  constexpr std::chrono::nanoseconds kSpread = std::chrono::milliseconds(100);

  // Warm-up: grow the heap's slot and heap arrays to the full size, so the timed loop measures
  // scheduling and firing rather than the arrays' first growth.
  {
    std::vector<plexus::TimerId> ids;
    ids.reserve(static_cast<std::size_t>(timer_count));
    for (std::int64_t i = 0; i < timer_count; ++i) {
      ids.push_back(heap->Schedule(std::chrono::hours(1), callback));
    }
    for (const plexus::TimerId& id : ids) heap->Cancel(id);
  }

  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) {
    fired.store(0, std::memory_order_relaxed);
    const auto start = plexus::MonotonicClock::now();
    for (std::int64_t i = 0; i < timer_count; ++i) {
      heap->ScheduleAt(start + kSpread * i / timer_count, callback);
    }
    WaitUntil(fired, timer_count);
  }
  const double timers = static_cast<double>(state.iterations()) * static_cast<double>(timer_count);
  state.counters["allocs/op"] =
      static_cast<double>(plexus_bench::AllocationCount() - allocations_before) / timers;
  state.SetItemsProcessed(static_cast<std::int64_t>(timers));
  heap = nullptr;
}

// PLEXUS_BENCH_ITERATIONS=<n> fixes the iteration count of the push/run and ping-pong rows, so
// that instruction counts under callgrind are reproducible and comparable between builds.
void FixedIterationsFromEnvironment(benchmark::internal::Benchmark* b) {
  const char* text = std::getenv("PLEXUS_BENCH_ITERATIONS");
  if (text == nullptr) return;
  const long long iterations = std::atoll(text);
  if (iterations > 0) b->Iterations(static_cast<benchmark::IterationCount>(iterations));
}

BENCHMARK(BM_TaskProcessor_PushRun)->UseRealTime()->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_AsioStrand_PostRun)->UseRealTime()->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_TaskProcessor_PingPong)
    ->Arg(kPingPongPairs)
    ->UseRealTime()
    ->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_AsioStrand_PingPong)
    ->Arg(kPingPongPairs)
    ->UseRealTime()
    ->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_ThreadPool_Push)->UseRealTime();
BENCHMARK(BM_AsioThreadPool_Post)->UseRealTime();
BENCHMARK(BM_TaskProcessor_Create_Destroy)->UseRealTime();
BENCHMARK(BM_TimerHeap_ScheduleCancel)->UseRealTime();
BENCHMARK(BM_TimerHeap_Fire)->Arg(1'000'000)->Iterations(1)->UseRealTime();

}  // namespace
