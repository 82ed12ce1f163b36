// Cache benchmarks: plexus's Cache read by N threads while one thread keeps updating it through
// a caching topic, beside the anchor a hand-written cache would be: a std::unordered_map of
// Ref<Message> guarded by one std::shared_mutex, read and updated the same way, in the same
// binary and run.
//
// Rows:
//   BM_Cache_Get/threads:N        N reader threads (the benchmark's) each get the local
//                                 snapshot of a random one of 10 000 cached objects per
//                                 iteration, and keep what they got (a ring of 64 Refs per
//                                 reader, so a snapshot outlives the cache's hold on it).
//                                 Meanwhile one writer thread publishes a new snapshot of a
//                                 random object on the original topic, in a loop: the caching
//                                 topic (synchronous) replaces the entry.
//   BM_SharedMutexMap_Get/threads:N  The anchor: the same reads and writes on the map; the
//                                 writer builds the message outside the lock, swaps it in under
//                                 the exclusive lock, and lets the old one go after unlocking.
//
// Each row runs with the writer (writer:1, the figure) and without it (writer:0: the read path
// alone, for diagnosis).
//
// items/s = reads per second summed over the readers (real time). writes_per_s is the
// writer's rate over the same interval: a reader-writer lock that starves its writer would
// show it there. Compare rows of equal N; the ratio is the figure (the target: plexus >= 3x
// the anchor's reads/s at the machine's thread count). On a machine with few cores the
// writer and the readers share them, so the ratio, not the absolute rate, is what carries.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "plexus/bus/bus.h"

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
    // Realistic ids (Asterisk's channel uniqueids are this long): hashing is part of a get.
    for (int i = 0; i < kObjects; ++i) out.push_back("1700000000." + std::to_string(100000 + i));
    return out;
  }();
  return ids;
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

// What both sides share: the writer thread and its rate.
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

// --- plexus ----------------------------------------------------------------------------------

struct PlexusSide : Side {
  plexus::Ref<plexus::Cache> cache;
  plexus::Ref<plexus::Topic> topic;
  plexus::Ref<plexus::CachingTopic> caching;

  explicit PlexusSide(bool with_writer) {
    cache = plexus::Cache::Create([](const plexus::Message& m) {
      const Snapshot* s = SnapshotType().Get(m);
      return s != nullptr ? Ids()[s->id] : std::string();
    });
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
  const std::vector<std::string>& ids = Ids();
  Rng rng{0x1234567ull + static_cast<std::uint64_t>(state.thread_index()) * 7919};
  std::array<plexus::Ref<plexus::Message>, 64> kept;
  std::size_t slot = 0;
  for (auto _ : state) {
    plexus::Ref<plexus::Message> m =
        plexus_side->cache->Get(SnapshotType(), ids[rng.Next() % kObjects]);
    benchmark::DoNotOptimize(m.get());
    kept[slot++ & 63] = std::move(m);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    plexus_side->StopWriter(state);
    delete plexus_side;
    plexus_side = nullptr;
  }
}

// --- anchor: one shared_mutex over an unordered_map ------------------------------------------

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
  const std::vector<std::string>& ids = Ids();
  Rng rng{0x1234567ull + static_cast<std::uint64_t>(state.thread_index()) * 7919};
  std::array<plexus::Ref<plexus::Message>, 64> kept;
  std::size_t slot = 0;
  for (auto _ : state) {
    plexus::Ref<plexus::Message> m = anchor_side->Get(ids[rng.Next() % kObjects]);
    benchmark::DoNotOptimize(m.get());
    kept[slot++ & 63] = std::move(m);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    anchor_side->StopWriter(state);
    delete anchor_side;
    anchor_side = nullptr;
  }
}

int MaxReaders() {
  return static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
}

BENCHMARK(BM_Cache_Get)
    ->ArgName("writer")
    ->Arg(1)
    ->Arg(0)
    ->ThreadRange(1, MaxReaders())
    ->UseRealTime();
BENCHMARK(BM_SharedMutexMap_Get)
    ->ArgName("writer")
    ->Arg(1)
    ->Arg(0)
    ->ThreadRange(1, MaxReaders())
    ->UseRealTime();

}  // namespace
