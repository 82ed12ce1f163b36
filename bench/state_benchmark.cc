// State manager benchmarks: 100 000 states, each with one pool subscriber, made and torn down
// through plexus's StateManager, beside the anchor: the same work done by hand, a
// std::unordered_map<std::string, std::shared_ptr<Entry>> under a std::mutex whose entries hold
// a topic, its forward into an "all" topic, a last message and a pool subscription. The ratio of
// the two rows is the manager's own cost.
//
// Rows (one iteration each: a state population is made once, measured, and torn down):
//   BM_State_Lifecycle          StateManager::Subscribe(id, handler) for 100 000 ids, then
//                               Unsubscribe on every handle and a wait for every final message.
//   BM_StateAnchor_Lifecycle    The anchor: lock, look the id up, make the topic, forward it
//                               into "all", subscribe, insert; teardown unsubscribes and erases.
//   BM_StateFloor_Lifecycle     For diagnosis: the bus's objects alone (topic, forward,
//                               subscription) in a reserved vector, no lookup, no last message.
//
// Counters:
//   bytes_per_state     net heap growth through operator new (usable block sizes) from before
//                       the first state to after every subscribe notice was handled, per state:
//                       the state's topic, forward, subscription and the manager's (the map's)
//                       own records. The handles' vector is reserved before and not counted.
//   allocs_per_state    operator new calls over the same window, per state.
//   create_per_s        states made per second (wall time, including the subscribe notices'
//                       handling on the pool).
//   teardown_per_s      states torn down per second (wall time, until every final message was
//                       handled and every handle let go).
//   bytes_left_per_state  net heap left after the teardown (should be ~0).
// Run with --benchmark_repetitions=5 --benchmark_report_aggregates_only=true and read medians.

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "alloc_counter.h"
#include "plexus/bus/bus.h"
#include "plexus/bus/state_manager.h"
#include "plexus/exec/thread_pool.h"

namespace {

using plexus::Message;
using plexus::Ref;
using plexus::StateManager;
using plexus::StateSubscriber;
using plexus::Subscription;
using plexus::SubscriptionOptions;
using plexus::ThreadPool;
using plexus::Topic;

constexpr int kStates = 100'000;

const std::vector<std::string>& Ids() {
  static const std::vector<std::string> ids = [] {
    std::vector<std::string> out;
    out.reserve(kStates);
    char text[16];
    for (int i = 0; i < kStates; ++i) {
      std::snprintf(text, sizeof text, "%05d", i);
      out.emplace_back(text);
    }
    return out;
  }();
  return ids;
}

std::size_t PoolThreads() {
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware < 2 ? 2 : hardware;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Waits until `counter` reaches `target`, giving up if it stops moving for a second (a
// benchmark must end; a shortfall shows in the counters as a bad ratio).
void WaitForCount(const std::atomic<std::int64_t>& counter, std::int64_t target) {
  std::int64_t seen = counter.load(std::memory_order_relaxed);
  auto progress_at = std::chrono::steady_clock::now();
  while (seen < target &&
         std::chrono::steady_clock::now() - progress_at < std::chrono::seconds(1)) {
    std::this_thread::yield();
    const std::int64_t now_seen = counter.load(std::memory_order_relaxed);
    if (now_seen != seen) {
      seen = now_seen;
      progress_at = std::chrono::steady_clock::now();
    }
  }
}

// What both rows measure, reported the same way.
struct Figures {
  std::int64_t bytes = 0;
  std::uint64_t allocations = 0;
  double create_s = 0;
  double teardown_s = 0;
  std::int64_t bytes_left = 0;
};

void Report(benchmark::State& state, const Figures& f) {
  state.counters["bytes_per_state"] = static_cast<double>(f.bytes) / kStates;
  state.counters["allocs_per_state"] = static_cast<double>(f.allocations) / kStates;
  state.counters["create_per_s"] = kStates / f.create_s;
  state.counters["teardown_per_s"] = kStates / f.teardown_s;
  state.counters["bytes_left_per_state"] = static_cast<double>(f.bytes_left) / kStates;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kStates);
}

// The subscribers' callback state: counts subscribe notices and final messages.
struct Counts {
  std::atomic<std::int64_t> notices{0};
  std::atomic<std::int64_t> finals{0};
};

plexus::MessageHandler CountingHandler(Counts* counts) {
  return [counts](const Message&, bool is_final) {
    (is_final ? counts->finals : counts->notices).fetch_add(1, std::memory_order_relaxed);
  };
}

void BM_State_Lifecycle(benchmark::State& state) {
  const std::vector<std::string>& ids = Ids();
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "bench-state", .initial_size = PoolThreads()});
  SubscriptionOptions options;
  options.pool = pool;
  Figures f;
  plexus_bench::EnableByteCounting(true);
  for (auto _ : state) {
    Counts counts;
    std::vector<StateSubscriber> subscribers;
    subscribers.reserve(kStates);
    const std::int64_t bytes0 = plexus_bench::NetAllocatedBytes();
    const std::uint64_t allocations0 = plexus_bench::AllocationCount();
    const auto t0 = std::chrono::steady_clock::now();

    Ref<StateManager> manager = StateManager::Create("bench-state");
    for (const std::string& id : ids) {
      subscribers.push_back(manager->Subscribe(id, CountingHandler(&counts), options));
    }
    WaitForCount(counts.notices, kStates);
    const auto t1 = std::chrono::steady_clock::now();
    f.bytes = plexus_bench::NetAllocatedBytes() - bytes0;
    f.allocations = plexus_bench::AllocationCount() - allocations0;

    for (StateSubscriber& s : subscribers) s.Unsubscribe();
    WaitForCount(counts.finals, kStates);
    subscribers.clear();
    manager.Reset();
    const auto t2 = std::chrono::steady_clock::now();
    f.create_s = Seconds(t1 - t0);
    f.teardown_s = Seconds(t2 - t1);
    f.bytes_left = plexus_bench::NetAllocatedBytes() - bytes0;
  }
  plexus_bench::EnableByteCounting(false);
  Report(state, f);
  pool->Shutdown();
}

// The anchor: what a caller writes without a state manager.
struct AnchorEntry {
  Ref<Topic> topic;
  plexus::Forward forward;
  Ref<Message> last;
  Subscription subscription;
};

class AnchorStates {
 public:
  explicit AnchorStates(Ref<Topic> all) : all_(std::move(all)) {}

  void Subscribe(const std::string& id, plexus::MessageHandler handler,
                 const SubscriptionOptions& options) {
    std::lock_guard lock(mu_);
    std::shared_ptr<AnchorEntry>& entry = entries_[id];
    if (entry == nullptr) {
      entry = std::make_shared<AnchorEntry>();
      entry->topic = Topic::Create(all_->Name() + "/" + id);
      entry->forward = plexus::ForwardAll(entry->topic, all_);
    }
    entry->subscription = Subscription::Create(entry->topic, std::move(handler), options);
  }

  void UnsubscribeAll() {
    std::lock_guard lock(mu_);
    for (auto& [id, entry] : entries_) entry->subscription.Unsubscribe();
  }

  void Clear() {
    std::lock_guard lock(mu_);
    entries_.clear();
  }

 private:
  const Ref<Topic> all_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<AnchorEntry>> entries_;
};

void BM_StateAnchor_Lifecycle(benchmark::State& state) {
  const std::vector<std::string>& ids = Ids();
  Ref<ThreadPool> pool =
      ThreadPool::Create({.name = "bench-anchor", .initial_size = PoolThreads()});
  SubscriptionOptions options;
  options.pool = pool;
  Figures f;
  plexus_bench::EnableByteCounting(true);
  for (auto _ : state) {
    Counts counts;
    const std::int64_t bytes0 = plexus_bench::NetAllocatedBytes();
    const std::uint64_t allocations0 = plexus_bench::AllocationCount();
    const auto t0 = std::chrono::steady_clock::now();

    auto states = std::make_unique<AnchorStates>(Topic::Create("bench-anchor"));
    for (const std::string& id : ids) states->Subscribe(id, CountingHandler(&counts), options);
    WaitForCount(counts.notices, kStates);
    const auto t1 = std::chrono::steady_clock::now();
    f.bytes = plexus_bench::NetAllocatedBytes() - bytes0;
    f.allocations = plexus_bench::AllocationCount() - allocations0;

    states->UnsubscribeAll();
    WaitForCount(counts.finals, kStates);
    states->Clear();
    states.reset();
    const auto t2 = std::chrono::steady_clock::now();
    f.create_s = Seconds(t1 - t0);
    f.teardown_s = Seconds(t2 - t1);
    f.bytes_left = plexus_bench::NetAllocatedBytes() - bytes0;
  }
  plexus_bench::EnableByteCounting(false);
  Report(state, f);
  pool->Shutdown();
}

// The floor, for diagnosis: the bus's own objects per state (a topic, its forward into "all",
// a pool subscription) kept in a vector reserved beforehand, with no lookup by id and no
// last message: what any state manager must pay, so bytes_per_state above it is the manager's.
void BM_StateFloor_Lifecycle(benchmark::State& state) {
  const std::vector<std::string>& ids = Ids();
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "bench-floor", .initial_size = PoolThreads()});
  SubscriptionOptions options;
  options.pool = pool;
  Figures f;
  plexus_bench::EnableByteCounting(true);
  for (auto _ : state) {
    Counts counts;
    std::vector<AnchorEntry> entries(kStates);
    const std::int64_t bytes0 = plexus_bench::NetAllocatedBytes();
    const std::uint64_t allocations0 = plexus_bench::AllocationCount();
    const auto t0 = std::chrono::steady_clock::now();

    Ref<Topic> all = Topic::Create("bench-floor");
    for (int i = 0; i < kStates; ++i) {
      AnchorEntry& e = entries[i];
      e.topic = Topic::Create(all->Name() + "/" + ids[i]);
      e.forward = plexus::ForwardAll(e.topic, all);
      e.subscription = Subscription::Create(e.topic, CountingHandler(&counts), options);
    }
    WaitForCount(counts.notices, kStates);
    const auto t1 = std::chrono::steady_clock::now();
    f.bytes = plexus_bench::NetAllocatedBytes() - bytes0;
    f.allocations = plexus_bench::AllocationCount() - allocations0;

    for (AnchorEntry& e : entries) e.subscription.Unsubscribe();
    WaitForCount(counts.finals, kStates);
    for (AnchorEntry& e : entries) e = AnchorEntry();
    all = nullptr;
    const auto t2 = std::chrono::steady_clock::now();
    f.create_s = Seconds(t1 - t0);
    f.teardown_s = Seconds(t2 - t1);
    f.bytes_left = plexus_bench::NetAllocatedBytes() - bytes0;
  }
  plexus_bench::EnableByteCounting(false);
  Report(state, f);
  pool->Shutdown();
}

BENCHMARK(BM_State_Lifecycle)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StateAnchor_Lifecycle)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StateFloor_Lifecycle)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
