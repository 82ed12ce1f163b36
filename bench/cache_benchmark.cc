// Cache benchmarks: plexus's Cache read by N threads while one thread keeps updating it through
// a caching topic, beside two anchors doing the same work in the same binary and run; and the
// cost of a publish through a caching topic beside a plain publish.
//
// Read rows (N = 1 and 2 reader threads, the benchmark's; each with and without a writer):
//   BM_Cache_Get/writer:W/threads:N  each reader gets the local snapshot of a random one of
//                                 10 000 cached objects per iteration, and keeps what it got (a
//                                 ring of 64 Refs per reader, so a snapshot outlives the
//                                 cache's hold on it). With writer:1 one more thread publishes
//                                 a new snapshot of a random object on the original topic, in
//                                 a loop: the caching topic (synchronous) replaces the entry.
//   BM_SharedMutexMap_Get/...     anchor (a): a std::unordered_map<std::string, Ref<Message>>
//                                 guarded by one std::shared_mutex (Asterisk's shape: one
//                                 container, one lock); the writer builds the message outside
//                                 the lock, swaps it in under the exclusive lock, and lets the
//                                 old one go after unlocking.
//   BM_UrcuLfht_Get/...           anchor (b): liburcu's lock-free RCU hash table (cds_lfht,
//                                 memb flavour). A get is rcu_read_lock, cds_lfht_lookup, one
//                                 atomic increment of the found object's message (the Ref the
//                                 reader keeps), rcu_read_unlock. The writer replaces the node
//                                 (cds_lfht_replace) and frees the old one through call_rcu.
//
// items/s = reads per second summed over the readers (real time). writes_per_s is the writer's
// rate over the same interval. Compare rows of equal W and N; the ratios are the figures
// (targets, writer:1: plexus >= 3x anchor (a), >= 0.7x anchor (b)). On a machine with few
// cores the writer and the readers share them, so the ratio, not the absolute rate, carries.
//
// Publish rows (one publisher, the benchmark thread; a new message per iteration, for a random
// one of the 10 000 objects, all cached before the timed loop):
//   BM_Cache_PlainPublish_Pool    anchor: publish on a topic with one pool subscription.
//   BM_Cache_CachingPublish_Pool  publish on the original topic of a caching topic whose output
//                                 has one pool subscription (which receives the updates).
//   BM_Cache_CachingPublish_NoOutputSubscriber  the same with nobody on the output.
//   BM_Cache_CachingPublish_Pool_100Objects  diagnostic, no target: CachingPublish_Pool over 100
//                                 objects instead of 10 000, so that every entry stays in the
//                                 publisher's caches. The difference between the two rows is
//                                 what the table's misses cost (an entry of 10 000 written in
//                                 random order is seldom in L2); the rest is the path's own.
// Target: CachingPublish_Pool <= 2x PlainPublish_Pool (time per publish). allocs/op: operator
// new calls per publish (any thread); the NoOutputSubscriber row's target is 0 (a message is
// made from the bus's recycled blocks; an update of an existing entry allocates nothing).
// The publisher stays within kWindow messages of its subscriber. The id function returns a view
// of the id (the form for snapshots that hold their ids), so it builds no string per publish.
//
// Write row:
//   BM_Cache_Put_BesideIdleReaders/readers:R  the benchmark thread puts a new snapshot of a
//                                 random object per iteration (Cache::Put) while R other
//                                 threads, which each read the cache once, sit idle: what a
//                                 write spends on the epoch domain's reader slots, by R.

#include <benchmark/benchmark.h>
#include <urcu.h>
#include <urcu/rculfhash.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "alloc_counter.h"
#include "plexus/bus/bus.h"
#include "plexus/exec/thread_pool.h"

namespace {

constexpr int kObjects = 10000;

struct Snapshot {
  int id = 0;
  std::uint64_t version = 0;
};

const plexus::TypedMessageType<Snapshot>& SnapshotType() {
  static const auto type = plexus::TypedMessageType<Snapshot>::Create("Bench.CacheSnapshot");
  return type;
}

const std::vector<std::string>& Ids() {
  static const std::vector<std::string> ids = [] {
    std::vector<std::string> out;
    out.reserve(kObjects);
    // Asterisk's uniqueid shape ("<seconds>.<sequence>"): hashing is part of a get. At most 15
    // characters: inline in a std::string.
    for (int i = 0; i < kObjects; ++i) out.push_back("1700000000." + std::to_string(i));
    return out;
  }();
  return ids;
}

// The id function's view form (Cache::IdViewFunction), as a user whose snapshots hold their ids
// writes it (Asterisk's returns a const char* into the snapshot): a view, valid while the
// message lives, here into the id table the snapshots index, which outlives every message.
std::string_view SnapshotId(const plexus::Message& m) {
  const Snapshot* s = SnapshotType().Get(m);
  return s != nullptr ? std::string_view(Ids()[s->id]) : std::string_view();
}

// xorshift: cheap enough not to dominate a get.
struct Rng {
  std::uint64_t s;
  std::uint32_t Next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<std::uint32_t>(s);
  }
};

// What every side shares: the writer thread and its rate.
struct Side {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> writes{0};
  std::thread writer;
  std::chrono::steady_clock::time_point started;

  void StopWriter(benchmark::State& state) {
    stop.store(true);
    if (writer.joinable()) writer.join();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    state.counters["writes_per_s"] = static_cast<double>(writes.load()) / seconds;
  }
};

// One get, apart so that instruction counts can be taken of it alone:
// valgrind --tool=callgrind --toggle-collect='*ReadOne*'.
template <class Get>
[[gnu::noinline]] plexus::Ref<plexus::Message> ReadOne(Get& get, const std::string& id) {
  return get(id);
}

// Runs the read loop of one reader thread: `get` returns a Ref the reader keeps for a while.
template <class Get>
void ReadLoop(benchmark::State& state, Get&& get) {
  const std::vector<std::string>& ids = Ids();
  Rng rng{0x1234567ull + static_cast<std::uint64_t>(state.thread_index()) * 7919};
  std::array<plexus::Ref<plexus::Message>, 64> kept;
  std::size_t slot = 0;
  for (auto _ : state) {
    plexus::Ref<plexus::Message> m = ReadOne(get, ids[rng.Next() % kObjects]);
    benchmark::DoNotOptimize(m.get());
    kept[slot++ & 63] = std::move(m);
  }
  state.SetItemsProcessed(state.iterations());
}

// Lets the readers start together and the last one tear the side down (thread 0 made it).
template <class SideT>
struct Shared {
  SideT* side = nullptr;
};

// --- plexus ----------------------------------------------------------------------------------

struct PlexusSide : Side {
  plexus::Ref<plexus::Cache> cache;
  plexus::Ref<plexus::Topic> topic;
  plexus::Ref<plexus::CachingTopic> caching;

  explicit PlexusSide(bool with_writer) {
    cache = plexus::Cache::Create(&SnapshotId);
    topic = plexus::Topic::Create("bench-objects");
    caching = plexus::CachingTopic::Create(topic, cache);
    for (int i = 0; i < kObjects; ++i) topic->Publish(SnapshotType(), Snapshot{i, 0});
    started = std::chrono::steady_clock::now();
    if (!with_writer) return;
    writer = std::thread([this] {
      Rng rng{0x9E3779B97F4A7C15ull};
      for (std::uint64_t v = 1; !stop.load(std::memory_order_relaxed); ++v) {
        topic->Publish(SnapshotType(), Snapshot{static_cast<int>(rng.Next() % kObjects), v});
        writes.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
};

PlexusSide* plexus_side = nullptr;

void BM_Cache_Get(benchmark::State& state) {
  if (state.thread_index() == 0) plexus_side = new PlexusSide(state.range(0) != 0);
  ReadLoop(state,
           [](const std::string& id) { return plexus_side->cache->Get(SnapshotType(), id); });
  if (state.thread_index() == 0) {
    plexus_side->StopWriter(state);
    delete plexus_side;
    plexus_side = nullptr;
  }
}

// --- anchor (a): one shared_mutex over an unordered_map --------------------------------------

struct AnchorSide : Side {
  std::shared_mutex mu;
  std::unordered_map<std::string, plexus::Ref<plexus::Message>> map;  // guarded by mu

  explicit AnchorSide(bool with_writer) {
    for (int i = 0; i < kObjects; ++i) map.emplace(Ids()[i], SnapshotType().Make(Snapshot{i, 0}));
    started = std::chrono::steady_clock::now();
    if (!with_writer) return;
    writer = std::thread([this] {
      Rng rng{0x9E3779B97F4A7C15ull};
      for (std::uint64_t v = 1; !stop.load(std::memory_order_relaxed); ++v) {
        const int id = static_cast<int>(rng.Next() % kObjects);
        plexus::Ref<plexus::Message> m = SnapshotType().Make(Snapshot{id, v});
        {
          std::unique_lock lock(mu);
          map.find(Ids()[id])->second.swap(m);
        }
        writes.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  plexus::Ref<plexus::Message> Get(const std::string& id) {
    std::shared_lock lock(mu);
    auto it = map.find(id);
    return it != map.end() ? it->second : nullptr;
  }
};

AnchorSide* anchor_side = nullptr;

void BM_SharedMutexMap_Get(benchmark::State& state) {
  if (state.thread_index() == 0) anchor_side = new AnchorSide(state.range(0) != 0);
  ReadLoop(state, [](const std::string& id) { return anchor_side->Get(id); });
  if (state.thread_index() == 0) {
    anchor_side->StopWriter(state);
    delete anchor_side;
    anchor_side = nullptr;
  }
}

// --- anchor (b): liburcu's RCU lock-free hash table ------------------------------------------

struct UrcuObject {
  cds_lfht_node node;
  rcu_head rcu;
  std::string id;
  plexus::Message* message;  // one reference, dropped with the object
};

std::size_t HashOf(std::string_view id) {
  return std::hash<std::string_view>{}(id);
}

int MatchId(cds_lfht_node* node, const void* key) {
  const UrcuObject* o = caa_container_of(node, UrcuObject, node);
  return o->id == *static_cast<const std::string_view*>(key);
}

void FreeUrcuObject(rcu_head* head) {
  UrcuObject* o = caa_container_of(head, UrcuObject, rcu);
  plexus::Ref<plexus::Message>::Adopt(o->message).Reset();
  delete o;
}

UrcuObject* NewUrcuObject(int id, std::uint64_t version) {
  auto* o = new UrcuObject;
  cds_lfht_node_init(&o->node);
  o->id = Ids()[id];
  o->message = SnapshotType().Make(Snapshot{id, version}).Detach();
  return o;
}

struct UrcuSide : Side {
  cds_lfht* table = nullptr;

  explicit UrcuSide(bool with_writer) {
    // Sizes are powers of two; 16384 buckets hold the 10 000 objects without a resize.
    table = cds_lfht_new(16384, 16384, 0, CDS_LFHT_AUTO_RESIZE, nullptr);
    rcu_read_lock();
    for (int i = 0; i < kObjects; ++i) {
      UrcuObject* o = NewUrcuObject(i, 0);
      cds_lfht_add(table, HashOf(o->id), &o->node);
    }
    rcu_read_unlock();
    started = std::chrono::steady_clock::now();
    if (!with_writer) return;
    writer = std::thread([this] {
      rcu_register_thread();
      Rng rng{0x9E3779B97F4A7C15ull};
      for (std::uint64_t v = 1; !stop.load(std::memory_order_relaxed); ++v) {
        const int id = static_cast<int>(rng.Next() % kObjects);
        UrcuObject* next = NewUrcuObject(id, v);
        const std::string_view key = next->id;
        rcu_read_lock();
        cds_lfht_iter iter;
        cds_lfht_lookup(table, HashOf(key), &MatchId, &key, &iter);
        cds_lfht_node* old = cds_lfht_iter_get_node(&iter);
        if (old != nullptr &&
            cds_lfht_replace(table, &iter, HashOf(key), &MatchId, &key, &next->node) == 0) {
          call_rcu(&caa_container_of(old, UrcuObject, node)->rcu, &FreeUrcuObject);
        } else {
          FreeUrcuObject(&next->rcu);
        }
        rcu_read_unlock();
        writes.fetch_add(1, std::memory_order_relaxed);
      }
      rcu_unregister_thread();
    });
  }

  // Called by a registered thread, after the writer stopped.
  void Destroy() {
    cds_lfht_iter iter;
    cds_lfht_node* node;
    rcu_read_lock();
    cds_lfht_for_each(table, &iter, node) {
      if (cds_lfht_del(table, node) == 0) {
        call_rcu(&caa_container_of(node, UrcuObject, node)->rcu, &FreeUrcuObject);
      }
    }
    rcu_read_unlock();
    rcu_barrier();
    cds_lfht_destroy(table, nullptr);
  }

  plexus::Ref<plexus::Message> Get(const std::string& id) {
    const std::string_view key = id;
    plexus::Ref<plexus::Message> out;
    rcu_read_lock();
    cds_lfht_iter iter;
    cds_lfht_lookup(table, HashOf(key), &MatchId, &key, &iter);
    if (cds_lfht_node* node = cds_lfht_iter_get_node(&iter)) {
      out = plexus::Ref<plexus::Message>(caa_container_of(node, UrcuObject, node)->message);
    }
    rcu_read_unlock();
    return out;
  }
};

UrcuSide* urcu_side = nullptr;

void BM_UrcuLfht_Get(benchmark::State& state) {
  rcu_register_thread();
  if (state.thread_index() == 0) urcu_side = new UrcuSide(state.range(0) != 0);
  ReadLoop(state, [](const std::string& id) { return urcu_side->Get(id); });
  if (state.thread_index() == 0) {
    urcu_side->StopWriter(state);
    urcu_side->Destroy();
    delete urcu_side;
    urcu_side = nullptr;
  }
  rcu_unregister_thread();
}

BENCHMARK(BM_Cache_Get)->ArgName("writer")->Arg(1)->Arg(0)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_SharedMutexMap_Get)
    ->ArgName("writer")
    ->Arg(1)
    ->Arg(0)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_UrcuLfht_Get)
    ->ArgName("writer")
    ->Arg(1)
    ->Arg(0)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

// --- Publish through a caching topic ---------------------------------------------------------

constexpr std::int64_t kWindow = 8192;
constexpr std::int64_t kThrottleEvery = 256;

struct alignas(64) Counter {
  std::atomic<std::int64_t> n{0};
};

enum class PublishRow { kPlain, kCaching, kCachingNoOutputSubscriber };

// The publisher's side of a publish row.
struct PublishLoop {
  plexus::Ref<plexus::Topic> topic;
  Counter* delivered;  // null: nobody to wait for
  std::int64_t published = 0;

  void PublishOne(int id) {
    topic->Publish(SnapshotType(), Snapshot{id, static_cast<std::uint64_t>(published)});
    ++published;
    if (delivered != nullptr && published % kThrottleEvery == 0) {
      while (published - delivered->n.load(std::memory_order_acquire) > kWindow) {
        std::this_thread::yield();
      }
    }
  }
  // The timed loop's publish, apart so that instruction counts can be taken of it alone:
  // valgrind --tool=callgrind --toggle-collect='*PublishLoop::PublishTimed*'.
  [[gnu::noinline]] void PublishTimed(int id) { PublishOne(id); }
  void Drain() {
    if (delivered == nullptr) return;
    while (delivered->n.load(std::memory_order_acquire) != published) std::this_thread::yield();
  }
};

void RunPublish(benchmark::State& state, PublishRow row, int objects = kObjects) {
  auto pool = plexus::ThreadPool::Create({.name = "bench-cache", .initial_size = 2});
  plexus::Ref<plexus::Cache> cache = plexus::Cache::Create(&SnapshotId);
  plexus::Ref<plexus::Topic> topic = plexus::Topic::Create("bench-publish");
  plexus::Ref<plexus::CachingTopic> caching;
  if (row != PublishRow::kPlain) caching = plexus::CachingTopic::Create(topic, cache);
  Counter counter;
  plexus::Subscription sub;
  if (row != PublishRow::kCachingNoOutputSubscriber) {
    plexus::SubscriptionOptions options;
    options.mode = plexus::DeliveryMode::kPool;
    options.pool = pool;
    options.high_water = 1u << 30;
    options.low_water = 1u << 29;
    const plexus::MessageType* counted =
        row == PublishRow::kPlain ? SnapshotType().get() : plexus::CacheUpdateType().get();
    sub = plexus::Subscribe(
        row == PublishRow::kPlain ? topic : caching->Output(),
        [&counter, counted](const plexus::Message& m) {
          if (&m.Type() == counted) {
            counter.n.store(counter.n.load(std::memory_order_relaxed) + 1,
                            std::memory_order_release);
          }
        },
        options);
  }
  PublishLoop loop{topic, sub ? &counter : nullptr};
  Rng rng{0xC0FFEEull};
  // Every object cached (and every entry's first creation done) before the timed loop.
  for (int i = 0; i < objects; ++i) loop.PublishOne(i);
  for (int i = 0; i < kObjects; ++i) loop.PublishOne(static_cast<int>(rng.Next() % objects));
  loop.Drain();
  std::int64_t left = static_cast<std::int64_t>(state.max_iterations);
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) {
    loop.PublishTimed(static_cast<int>(rng.Next() % objects));
    if (--left == 0) loop.Drain();
  }
  plexus_bench::ReportAllocationsPerIteration(state, allocations_before);
  state.SetItemsProcessed(state.iterations());
  if (sub) sub.UnsubscribeAndJoin();
  caching.Reset();
  pool->Shutdown();
}

void BM_Cache_PlainPublish_Pool(benchmark::State& state) {
  RunPublish(state, PublishRow::kPlain);
}
void BM_Cache_CachingPublish_Pool(benchmark::State& state) {
  RunPublish(state, PublishRow::kCaching);
}
void BM_Cache_CachingPublish_NoOutputSubscriber(benchmark::State& state) {
  RunPublish(state, PublishRow::kCachingNoOutputSubscriber);
}
void BM_Cache_CachingPublish_Pool_100Objects(benchmark::State& state) {
  RunPublish(state, PublishRow::kCaching, /*objects=*/100);
}

BENCHMARK(BM_Cache_PlainPublish_Pool)->MinTime(0.3)->UseRealTime();
BENCHMARK(BM_Cache_CachingPublish_Pool)->MinTime(0.3)->UseRealTime();
BENCHMARK(BM_Cache_CachingPublish_NoOutputSubscriber)->MinTime(0.3)->UseRealTime();
BENCHMARK(BM_Cache_CachingPublish_Pool_100Objects)->MinTime(0.3)->UseRealTime();

// --- A write beside many reader threads --------------------------------------------------------

// `n` threads that each read the cache once (so each holds a reader slot of the epoch domain)
// and then wait, alive and outside the cache, until the row ends.
class IdleReaders {
 public:
  IdleReaders(const plexus::Ref<plexus::Cache>& cache, int n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, cache, i] {
        benchmark::DoNotOptimize(cache->Get(SnapshotType(), Ids()[i % kObjects]).get());
        std::unique_lock<std::mutex> lock(mu_);
        ++ready_;
        cv_.notify_all();
        cv_.wait(lock, [this] { return done_; });
      });
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this, n] { return ready_ == n; });
  }
  ~IdleReaders() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int ready_ = 0;
  bool done_ = false;
  std::vector<std::thread> threads_;
};

// The benchmark thread puts a new snapshot of a random one of the 10 000 cached objects per
// iteration (Cache::Put, no topic) while `readers` other threads have read the cache and sit
// idle. What a write spends looking at the readers' epoch slots shows as the rows part: it
// should not grow with the number of threads that ever read.
void BM_Cache_Put_BesideIdleReaders(benchmark::State& state) {
  const plexus::Ref<plexus::Cache> cache = plexus::Cache::Create(&SnapshotId);
  for (int i = 0; i < kObjects; ++i) cache->Put(SnapshotType().Make(Snapshot{i, 0}), Ids()[i]);
  const IdleReaders readers(cache, static_cast<int>(state.range(0)));
  Rng rng{0xFEEDull};
  std::uint64_t version = 1;
  for (auto _ : state) {
    const int id = static_cast<int>(rng.Next() % kObjects);
    benchmark::DoNotOptimize(
        cache->Put(SnapshotType().Make(Snapshot{id, version++}), Ids()[id]).SnapshotChanged());
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_Cache_Put_BesideIdleReaders)
    ->ArgName("readers")
    ->Arg(0)
    ->Arg(8)
    ->Arg(64)
    ->UseRealTime();

}  // namespace
