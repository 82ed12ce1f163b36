// CA10: readers getting and dumping while writers put and clear, through caching topics that
// share one cache, with an aggregate function running on every write. Every snapshot a reader
// gets must be one that was put for the (type, id, node) it asked for (checked field by field,
// so a torn or freed one shows, and AddressSanitizer sees a freed one); at the end the cache
// holds exactly the last put of each (id, node), and each aggregate is the sum of its entry.
// Loops shrink under the sanitizers; nothing waits on time.

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bus/bus_test_support.h"
#include "epoch.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"

namespace plexus {
namespace {

struct Stamp {
  int id = 0;
  int writer = 0;
  int seq = 0;
  int value = 0;  // id * 1000 + writer: derived, so a torn payload does not match
};

const TypedMessageType<Stamp>& StampType() {
  static const auto type = TypedMessageType<Stamp>::Create("CacheStress.Stamp");
  return type;
}

// Writer w speaks for node w (writer 0 for the local node).
NodeId NodeOf(int writer) {
  return writer == 0 ? NodeId::Local()
                     : NodeId(NodeId::Bytes{0x02, 0, 0, 0, 1, static_cast<std::uint8_t>(writer)});
}

Ref<Message> SumOfValues(const CacheEntry& entry, const Ref<Message>&) {
  int sum = 0;
  for (const Ref<Message>& s : entry.All()) sum += s->As<Stamp>()->value;
  return Message::Create(StampType().get(), Stamp{-1, -1, -1, sum}, NodeId::None());
}

// Checks that `m` is a snapshot of `id` from `writer`; returns false (and records a failure)
// otherwise.
bool Valid(const Ref<Message>& m, int id, int writer) {
  const Stamp* s = m->As<Stamp>();
  if (s == nullptr || s->id != id || s->writer != writer || s->value != id * 1000 + writer ||
      !(m->Node() == NodeOf(writer))) {
    ADD_FAILURE() << "unexpected snapshot for id " << id << " writer " << writer;
    return false;
  }
  return true;
}

TEST(CacheStress, CA10_ConcurrentReadersAndWriters) {
  constexpr int kWriters = 3;
  constexpr int kReaders = 3;
  constexpr int kIds = 64;
  const int rounds = plexus_test::BusScaled(4000);

  auto cache = Cache::Create(
      [](const Message& m) {
        const Stamp* s = StampType().Get(m);
        return s != nullptr ? std::to_string(s->id) : std::string();
      },
      &SumOfValues, nullptr);
  std::vector<Ref<Topic>> topics;
  std::vector<Ref<CachingTopic>> cachings;
  for (int w = 0; w < kWriters; ++w) {
    topics.push_back(Topic::Create("stress-" + std::to_string(w)));
    cachings.push_back(CachingTopic::Create(topics.back(), cache));
  }
  // A subscriber on one output, so updates are built and delivered meanwhile.
  plexus_test::Counter updates;
  Subscription sub = Subscribe(cachings[0]->Output(), [&](const Message& m) {
    if (CacheUpdateType().Get(m) != nullptr) updates.Add();
  });

  // What each writer last did per id: the seq it put, or -1 after a clear.
  std::vector<std::vector<int>> last(kWriters, std::vector<int>(kIds, -1));
  std::atomic<int> writers_left{kWriters};
  // Writers start once every reader runs, so reads overlap the writes even on a loaded machine.
  std::atomic<int> readers_ready{0};
  std::atomic<long> reads{0};
  std::atomic<int> bad{0};

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w + 1));
      while (readers_ready.load() < kReaders) std::this_thread::yield();
      for (int seq = 0; seq < rounds; ++seq) {
        const int id = static_cast<int>(rng() % kIds);
        const Ref<Message> m =
            Message::Create(StampType().get(), Stamp{id, w, seq, id * 1000 + w}, NodeOf(w));
        if (rng() % 4 == 0) {
          topics[w]->Publish(MakeCacheClear(m));
          last[w][id] = -1;
        } else {
          topics[w]->Publish(m);
          last[w][id] = seq;
        }
      }
      writers_left.fetch_sub(1);
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(static_cast<unsigned>(100 + r));
      std::vector<Ref<Message>> kept;  // readers may keep what they get
      readers_ready.fetch_add(1);
      for (int n = 0; writers_left.load() > 0 || n < 1000; ++n) {
        const int id = static_cast<int>(rng() % kIds);
        const int writer = static_cast<int>(rng() % kWriters);
        const std::string key = std::to_string(id);
        switch (rng() % 8) {
          case 0:
            for (const Ref<Message>& m : cache->DumpAll(StampType())) {
              const Stamp* s = m->As<Stamp>();
              if (s == nullptr || !Valid(m, s->id, s->writer)) bad.fetch_add(1);
            }
            break;
          case 1:
            for (const Ref<Message>& m : cache->GetAll(StampType(), key)) {
              const Stamp* s = m->As<Stamp>();
              if (s == nullptr || !Valid(m, id, s->writer)) bad.fetch_add(1);
            }
            break;
          default:
            if (Ref<Message> m = cache->GetByNode(StampType(), key, NodeOf(writer))) {
              if (!Valid(m, id, writer)) bad.fetch_add(1);
              if (kept.size() < 256) kept.push_back(std::move(m));
            }
            break;
        }
        reads.fetch_add(1, std::memory_order_relaxed);
      }
      for (const Ref<Message>& m : kept) {
        const Stamp* s = m->As<Stamp>();
        if (!Valid(m, s->id, s->writer)) bad.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);

  // The final contents: the last put of each (id, node); aggregates sum their entries.
  for (int id = 0; id < kIds; ++id) {
    const std::string key = std::to_string(id);
    int sum = 0;
    bool any = false;
    for (int w = 0; w < kWriters; ++w) {
      const Ref<Message> m = cache->GetByNode(StampType(), key, NodeOf(w));
      if (last[w][id] < 0) {
        EXPECT_EQ(m, nullptr) << "id " << id << " writer " << w;
        continue;
      }
      ASSERT_NE(m, nullptr) << "id " << id << " writer " << w;
      EXPECT_EQ(m->As<Stamp>()->seq, last[w][id]);
      sum += m->As<Stamp>()->value;
      any = true;
    }
    const Ref<Message> aggregate = cache->GetByNode(StampType(), key, NodeId::None());
    if (any) {
      ASSERT_NE(aggregate, nullptr) << "id " << id;
      EXPECT_EQ(aggregate->As<Stamp>()->value, sum) << "id " << id;
    } else {
      EXPECT_EQ(aggregate, nullptr) << "id " << id;
    }
  }
  EXPECT_EQ(cache->Stats().aggregate_failures, 0u);
  sub.UnsubscribeAndJoin();
}

// Writers of different ids running in parallel with dumps, directly on the cache (no topic):
// sizes and counters add up.
TEST(CacheStress, CA10_DirectPutsAndClearsAddUp) {
  constexpr int kThreads = 4;
  const int per_thread = plexus_test::BusScaled(5000);
  auto cache = Cache::Create([](const Message&) { return std::string("unused"); });
  std::vector<std::thread> threads;
  std::atomic<bool> done{false};
  std::thread dumper([&] {
    while (!done.load()) {
      const std::size_t n = cache->Dump().size();
      EXPECT_LE(n, static_cast<std::size_t>(kThreads * per_thread));
    }
  });
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        const std::string id = std::to_string(t) + "/" + std::to_string(i);
        cache->Put(Message::Create(StampType().get(), Stamp{i, t, i, i * 1000 + t}), id);
        if (i % 2 == 1) cache->Clear(StampType(), id, NodeId::Local());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  done.store(true);
  dumper.join();
  EXPECT_EQ(cache->Size(), static_cast<std::size_t>(kThreads * ((per_thread + 1) / 2)));
  EXPECT_EQ(cache->Dump().size(), cache->Size());
  EXPECT_EQ(cache->Stats().puts, static_cast<std::uint64_t>(kThreads * per_thread));
}

// A writer puts snapshots of one foreign node, each of a new id, one after the other, while
// readers get them and RemoveNode removes the node: a removal is one step for the writers, so
// what survives is a suffix of the writer's sequence (every put before the step is gone, every
// put after it kept), whichever shards the ids fall in.
TEST(CacheStress, CA07_RemoveNodeIsOneStepForPuts) {
  const int rounds = plexus_test::BusScaled(40);
  const NodeId node = NodeOf(1);
  for (int round = 0; round < rounds; ++round) {
    auto cache = Cache::Create([](const Message&) { return std::string("unused"); });
    std::atomic<int> put{0};           // puts returned
    std::atomic<bool> removed{false};  // RemoveNode returned
    std::atomic<int> bad{0};
    std::thread writer([&] {
      int after = 0;
      for (int k = 0; after < 50; ++k) {
        cache->Put(Message::Create(StampType().get(), Stamp{k, 1, k, k * 1000 + 1}, node),
                   std::to_string(k));
        put.store(k + 1);
        if (removed.load()) ++after;
      }
    });
    std::thread reader([&] {
      while (!removed.load()) {
        const int k = put.load();
        if (Ref<Message> m = cache->GetByNode(StampType(), std::to_string(k / 2), node)) {
          if (!Valid(m, k / 2, 1)) bad.fetch_add(1);
        }
      }
    });
    while (put.load() < 100) std::this_thread::yield();
    cache->RemoveNode(node);
    removed.store(true);
    writer.join();
    reader.join();
    EXPECT_EQ(bad.load(), 0);

    const int total = put.load();
    int first_kept = total;
    for (int k = total - 1; k >= 0; --k) {
      if (cache->GetByNode(StampType(), std::to_string(k), node) == nullptr) break;
      first_kept = k;
    }
    EXPECT_LT(first_kept, total) << "the puts after the removal were not kept";
    for (int k = 0; k < first_kept; ++k) {
      EXPECT_EQ(cache->GetByNode(StampType(), std::to_string(k), node), nullptr)
          << "round " << round << ": id " << k << " survived, but " << first_kept
          << " is the first of the kept suffix";
    }
    EXPECT_EQ(cache->Size(), static_cast<std::size_t>(total - first_kept));
  }
}

// Readers against writers, clears and node removals through caching topics: every read is a
// snapshot put for what was asked, the removals' updates never leave a removed node's snapshot
// behind them, and the cache ends consistent with itself.
TEST(CacheStress, CA10_ReadersAgainstWritersClearsAndRemovals) {
  constexpr int kWriters = 3;
  constexpr int kIds = 128;
  const int rounds = plexus_test::BusScaled(4000);
  auto cache = Cache::Create(
      [](const Message& m) {
        const Stamp* s = StampType().Get(m);
        return s != nullptr ? std::to_string(s->id) : std::string();
      },
      &SumOfValues, nullptr);
  std::vector<Ref<Topic>> topics;
  std::vector<Ref<CachingTopic>> cachings;
  for (int w = 0; w < kWriters; ++w) {
    topics.push_back(Topic::Create("stress-" + std::to_string(w)));
    cachings.push_back(CachingTopic::Create(topics.back(), cache));
  }
  std::atomic<int> writers_left{kWriters};
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w + 7));
      for (int seq = 0; seq < rounds; ++seq) {
        const int id = static_cast<int>(rng() % kIds);
        const Ref<Message> m =
            Message::Create(StampType().get(), Stamp{id, w, seq, id * 1000 + w}, NodeOf(w));
        topics[w]->Publish(rng() % 5 == 0 ? MakeCacheClear(m) : m);
      }
      writers_left.fetch_sub(1);
    });
  }
  threads.emplace_back([&] {
    std::mt19937 rng(99);
    while (writers_left.load() > 0) {
      const int w = 1 + static_cast<int>(rng() % (kWriters - 1));
      cachings[rng() % kWriters]->RemoveNode(NodeOf(w));
    }
  });
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(static_cast<unsigned>(200 + r));
      while (writers_left.load() > 0) {
        const int id = static_cast<int>(rng() % kIds);
        const int w = static_cast<int>(rng() % kWriters);
        if (rng() % 16 == 0) {
          for (const Ref<const CacheEntry>& e : cache->DumpEntries(StampType())) {
            for (const Ref<Message>& m : e->All()) {
              const Stamp* s = m->As<Stamp>();
              if (s == nullptr || !Valid(m, s->id, s->writer)) bad.fetch_add(1);
            }
          }
        } else if (Ref<Message> m = cache->GetByNode(StampType(), std::to_string(id), NodeOf(w))) {
          if (!Valid(m, id, w)) bad.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  // Every aggregate is the sum of what its entry holds now.
  std::size_t snapshots = 0;
  for (const Ref<const CacheEntry>& e : cache->DumpEntries()) {
    int sum = 0;
    for (const Ref<Message>& m : e->All()) sum += m->As<Stamp>()->value;
    snapshots += e->All().size();
    ASSERT_NE(e->Aggregate(), nullptr);
    EXPECT_EQ(e->Aggregate()->As<Stamp>()->value, sum);
  }
  EXPECT_EQ(cache->DumpAll().size(), snapshots);
  EXPECT_EQ(cache->Dump().size() + cache->DumpByNode(nullptr, NodeOf(1)).size() +
                cache->DumpByNode(nullptr, NodeOf(2)).size(),
            snapshots);
}

// Local snapshots updated in place (no aggregate function) while readers hold entries whole
// (GetEntry, DumpEntries) and get snapshots: a held entry never changes, however many writes
// follow; every get returns a whole snapshot of its id, never one already let go, and never one
// older than a snapshot the same reader got before (each id has one writer). Writer 0 writes
// through a caching topic, writer 1 directly; some writes are clears, so entries also come and
// go.
TEST(CacheStress, CA10_HeldEntriesStayPutUnderInPlaceUpdates) {
  constexpr int kWriters = 2;
  constexpr int kReaders = 2;
  constexpr int kIds = 32;
  const int rounds = plexus_test::BusScaled(20000);
  auto cache = Cache::Create([](const Message& m) {
    const Stamp* s = StampType().Get(m);
    return s != nullptr ? std::to_string(s->id) : std::string();
  });
  const Ref<Topic> topic = Topic::Create("stress-in-place");
  const Ref<CachingTopic> caching = CachingTopic::Create(topic, cache);
  // A subscriber on the output, so updates carry the replaced snapshots on to another thread.
  plexus_test::Counter updates;
  Subscription sub = Subscribe(caching->Output(), [&](const Message& m) {
    const CacheUpdate* u = CacheUpdateType().Get(m);
    if (u == nullptr) return;
    for (const Ref<Message>* s : {&u->old_snapshot, &u->new_snapshot}) {
      if (*s != nullptr && (*s)->As<Stamp>() == nullptr) ADD_FAILURE() << "not a stamp";
    }
    updates.Add();
  });

  std::atomic<int> writers_left{kWriters};
  std::atomic<int> readers_ready{0};
  std::atomic<int> bad{0};
  std::atomic<long> held_checks{0};
  // A snapshot of `id` (writer id % kWriters wrote it) that is whole and alive.
  const auto whole = [](const Message& m, int id) {
    const Stamp* s = m.As<Stamp>();
    return s != nullptr && s->id == id && s->writer == id % kWriters &&
           s->value == id * 1000 + s->writer && m.Node() == NodeId::Local();
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w + 11));
      while (readers_ready.load() < kReaders) std::this_thread::yield();
      for (int seq = 0; seq < rounds; ++seq) {
        const int id = w + kWriters * static_cast<int>(rng() % (kIds / kWriters));
        const Ref<Message> m = Message::Create(StampType().get(), Stamp{id, w, seq, id * 1000 + w});
        const bool clear = rng() % 16 == 0;
        if (w == 0) {
          topic->Publish(clear ? MakeCacheClear(m) : m);
        } else if (clear) {
          cache->Clear(StampType().get(), std::to_string(id), NodeId::Local());
        } else {
          cache->Put(m, std::to_string(id));
        }
      }
      writers_left.fetch_sub(1);
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(static_cast<unsigned>(300 + r));
      // An entry held whole, with what it held when it was handed out.
      struct Held {
        Ref<const CacheEntry> entry;
        const Message* local;
        Stamp stamp;
      };
      std::vector<Held> held;
      std::vector<int> newest(kIds, -1);  // the newest seq this reader got per id
      const auto hold = [&](Ref<const CacheEntry> e) {
        const Ref<Message> local = e->Local();
        if (local == nullptr) return;  // only a clear's leftovers: nothing to compare
        const int id = local->As<Stamp>() != nullptr ? local->As<Stamp>()->id : -1;
        if (!whole(*local, id) || e->Id() != std::to_string(id)) {
          bad.fetch_add(1);
          return;
        }
        if (held.size() >= 64) held.erase(held.begin());
        held.push_back({std::move(e), local.get(), *local->As<Stamp>()});
      };
      readers_ready.fetch_add(1);
      for (int n = 0; writers_left.load() > 0 || n < 2000; ++n) {
        const int id = static_cast<int>(rng() % kIds);
        const std::string key = std::to_string(id);
        const unsigned pick = rng() % 16;
        if (pick == 0) {
          for (Ref<const CacheEntry>& e : cache->DumpEntries(StampType())) hold(std::move(e));
        } else if (pick < 4) {
          if (Ref<const CacheEntry> e = cache->GetEntry(StampType(), key)) hold(std::move(e));
        } else if (Ref<Message> m = cache->Get(StampType(), key)) {
          if (!whole(*m, id)) {
            bad.fetch_add(1);
          } else {
            const int seq = m->As<Stamp>()->seq;
            if (seq < newest[id]) bad.fetch_add(1);  // older than one got before
            newest[id] = std::max(newest[id], seq);
          }
        }
        // Every held entry still holds what it held.
        for (const Held& h : held) {
          const Ref<Message> now = h.entry->Local();
          const Stamp* s = now != nullptr ? now->As<Stamp>() : nullptr;
          if (now.get() != h.local || s == nullptr || s->seq != h.stamp.seq ||
              s->id != h.stamp.id || s->value != h.stamp.value) {
            bad.fetch_add(1);
          }
        }
        held_checks.fetch_add(static_cast<long>(held.size()), std::memory_order_relaxed);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(held_checks.load(), 0);
  // Every update published reached the subscriber, each with whole snapshots.
  sub.UnsubscribeAndJoin();
  EXPECT_EQ(updates.Value(), caching->Stats().updates_published);
  for (const Ref<Message>& m : cache->Dump(StampType())) {
    const Stamp* s = m->As<Stamp>();
    EXPECT_TRUE(s != nullptr && whole(*m, s->id));
  }
}

// A payload that marks itself dead when destroyed, so a reader that looks at a snapshot already
// let go (the message allocator keeps freed blocks, which AddressSanitizer does not see) fails
// the check until the block is reused, and a reused block fails it by its fields.
struct Tracked {
  static constexpr int kAlive = 0x5eed;
  Tracked(int i, int s) : id(i), seq(s) {}
  Tracked(const Tracked& o) : id(o.id), seq(o.seq) {}
  ~Tracked() { alive.store(0, std::memory_order_relaxed); }
  int id;
  int seq;
  std::atomic<int> alive{kAlive};
};

const TypedMessageType<Tracked>& TrackedType() {
  static const auto type = TypedMessageType<Tracked>::Create("CacheStress.Tracked");
  return type;
}

// Local snapshots replaced in place while readers come and go: the cache hands its reference to
// a replaced snapshot to the write's change when no reader is inside it, and the change's holder
// may drop it at once (the direct writer drops every change as soon as it has it; the caching
// topic's subscriber drops each update once handled). Readers get snapshots and keep some (a
// ring per reader), list them (GetAll, Dump), and short-lived reader threads register and hand
// back epoch slots meanwhile, so writes find readers inside, outside, and arriving. Every
// snapshot a reader gets or keeps must be alive and of the id it asked for, and no get may go
// back in time. Some writes are clears, so entries also come and go. With more reader threads
// than the epoch domain scans (`readers` above EpochDomain::kMaxScannedReaders), no write looks
// for readers, so none hands over: every replaced snapshot waits in the limbo, which is emptied
// once per batch of as many writes as there are reader threads.
void RaceReplacedSnapshotsAgainstReaders(const int readers) {
  constexpr int kIds = 8;  // few ids: readers and writers meet on the same entries
  const bool hand_over_expected =
      readers <= static_cast<int>(bus_internal::EpochDomain::kMaxScannedReaders);
  const int rounds = plexus_test::BusScaled(40000);
  auto cache = Cache::Create([](const Message& m) {
    const Tracked* t = TrackedType().Get(m);
    return t != nullptr ? std::to_string(t->id) : std::string();
  });
  const Ref<Topic> topic = Topic::Create("stress-hand-over");
  const Ref<CachingTopic> caching = CachingTopic::Create(topic, cache);
  std::atomic<int> bad{0};
  const auto alive = [](const Message& m, int id) {
    const Tracked* t = m.As<Tracked>();
    return t != nullptr && t->alive.load(std::memory_order_relaxed) == Tracked::kAlive &&
           t->id == id;
  };
  plexus_test::Counter updates;
  Subscription sub = Subscribe(caching->Output(), [&](const Message& m) {
    const CacheUpdate* u = CacheUpdateType().Get(m);
    if (u == nullptr) return;
    if (u->old_snapshot != nullptr && u->old_snapshot->As<Tracked>() != nullptr &&
        !alive(*u->old_snapshot, u->old_snapshot->As<Tracked>()->id)) {
      bad.fetch_add(1);
    }
    updates.Add();
  });

  std::atomic<int> writers_left{2};
  std::atomic<int> readers_ready{0};
  // Changes whose replaced snapshot nobody but the change held: handed over by the cache (a
  // lower bound: a reader may hold one for a moment).
  std::atomic<long> handed_over{0};
  std::vector<std::thread> threads;
  // Writer 0 publishes through the caching topic (even ids), writer 1 puts directly (odd ids)
  // and drops each change at once.
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(static_cast<unsigned>(w + 21));
      while (readers_ready.load() < readers) std::this_thread::yield();
      // Writer 1 goes on (bounded) until it saw a hand-over while the readers still run: on a
      // loaded machine the readers may be inside the cache at every write of the first rounds.
      for (int seq = 0; seq < rounds || (w == 1 && hand_over_expected && handed_over.load() == 0 &&
                                         seq < rounds * 50);
           ++seq) {
        const int id = w + 2 * static_cast<int>(rng() % (kIds / 2));
        const Ref<Message> m = Message::Create(TrackedType().get(), Tracked{id, seq});
        const bool clear = rng() % 32 == 0;
        if (w == 0) {
          topic->Publish(clear ? MakeCacheClear(m) : m);
        } else if (clear) {
          cache->Clear(TrackedType().get(), std::to_string(id), NodeId::Local());
        } else {
          CacheChange change = cache->Put(m, std::to_string(id));
          if (change.old_snapshot != nullptr && change.old_snapshot->RefCount() == 1) {
            handed_over.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
      writers_left.fetch_sub(1);
    });
  }
  const auto read = [&](std::mt19937& rng, std::vector<Ref<Message>>& kept,
                        std::vector<int>& newest) {
    const int id = static_cast<int>(rng() % kIds);
    const std::string key = std::to_string(id);
    const unsigned pick = rng() % 16;
    if (pick == 0) {
      for (const Ref<Message>& m : cache->Dump(TrackedType())) {
        const Tracked* t = m->As<Tracked>();
        if (t == nullptr || !alive(*m, t->id)) bad.fetch_add(1);
      }
    } else if (pick == 1) {
      for (const Ref<Message>& m : cache->GetAll(TrackedType(), key)) {
        if (!alive(*m, id)) bad.fetch_add(1);
      }
    } else if (Ref<Message> m = cache->Get(TrackedType(), key)) {
      if (!alive(*m, id)) {
        bad.fetch_add(1);
        return;
      }
      const int seq = m->As<Tracked>()->seq;
      if (seq < newest[id]) bad.fetch_add(1);  // each id has one writer: never back in time
      newest[id] = std::max(newest[id], seq);
      // Keeps writer 0's snapshots only: a snapshot of writer 1 is then held by nobody but the
      // cache and a reader in the middle of a read, so writer 1 can tell a change the cache
      // handed its reference to (the change holds the only one).
      if (id % 2 == 0) kept[rng() % kept.size()] = std::move(m);
    }
  };
  const auto check_kept = [&](const std::vector<Ref<Message>>& kept) {
    for (const Ref<Message>& m : kept) {
      if (m != nullptr && !alive(*m, m->As<Tracked>()->id)) bad.fetch_add(1);
    }
  };
  for (int r = 0; r < readers; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(static_cast<unsigned>(400 + r));
      std::vector<Ref<Message>> kept(64);
      std::vector<int> newest(kIds, -1);
      readers_ready.fetch_add(1);
      for (int n = 0; writers_left.load() > 0 || n < 2000; ++n) {
        read(rng, kept, newest);
        if (n % 64 == 0) check_kept(kept);
      }
      check_kept(kept);
    });
  }
  // Readers that live for a few reads each: their threads take an epoch slot and hand it back.
  threads.emplace_back([&] {
    std::mt19937 rng(500);
    while (writers_left.load() > 0) {
      std::thread([&, seed = rng()] {
        std::mt19937 local(seed);
        std::vector<Ref<Message>> kept(8);
        std::vector<int> newest(kIds, -1);
        for (int n = 0; n < 32; ++n) read(local, kept, newest);
        check_kept(kept);
      }).join();
    }
  });
  for (std::thread& t : threads) t.join();
  sub.UnsubscribeAndJoin();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(updates.Value(), caching->Stats().updates_published);
  // The race did take the hand-over path (readers are outside the cache most of the time).
  if (hand_over_expected) {
    EXPECT_GT(handed_over.load(), 0);
  }
  for (int id = 0; id < kIds; ++id) {
    if (const Ref<Message> m = cache->Get(TrackedType(), std::to_string(id))) {
      EXPECT_TRUE(alive(*m, id)) << "id " << id;
    }
  }
}

TEST(CacheStress, CA10_ReplacedSnapshotsHandedToChangesWhileReadersComeAndGo) {
  RaceReplacedSnapshotsAgainstReaders(2);
}

// The same race with more reader threads than a write scans for: replaced snapshots go through
// the limbo only, in batches that grow with the readers, and none is let go while a reader may
// still reach it.
TEST(CacheStress, CA10_ReplacedSnapshotsRetiredWhileManyReaderThreadsComeAndGo) {
  RaceReplacedSnapshotsAgainstReaders(
      static_cast<int>(bus_internal::EpochDomain::kMaxScannedReaders) + 4);
}

// A caching topic's four handles (cache, topic, caching topic, output subscriber) dropped in
// every order while a publisher publishes on the topic and a reader reads the cache (each
// holding its own reference): no error, leak or hang.
TEST(CacheStress, CA08_TeardownInEveryOrderUnderLoad) {
  std::array<int, 4> order = {0, 1, 2, 3};
  do {
    Ref<Cache> cache = Cache::Create([](const Message& m) {
      const Stamp* s = StampType().Get(m);
      return s != nullptr ? std::to_string(s->id % 16) : std::string();
    });
    Ref<Topic> topic = Topic::Create("stress-teardown");
    Ref<CachingTopic> caching = CachingTopic::Create(topic, cache);
    const std::uint64_t output_id = caching->Output()->Id();
    plexus_test::Counter updates;
    Subscription sub = Subscribe(caching->Output(), [&](const Message&) { updates.Add(); });
    std::atomic<bool> stop{false};
    std::thread publisher([&stop, t = topic] {
      for (int i = 0; !stop.load(); ++i) t->Publish(StampType(), Stamp{i, 0, i, i * 1000});
    });
    std::thread reader([&stop, c = cache] {
      while (!stop.load()) c->Get(StampType(), "3");
    });
    for (int i = 0; i < 50; ++i) topic->Publish(StampType(), Stamp{i, 0, i, i * 1000});
    for (int handle : order) {
      switch (handle) {
        case 0:
          cache.Reset();
          break;
        case 1:
          topic.Reset();
          break;
        case 2:
          caching.Reset();
          break;
        case 3:
          sub.UnsubscribeAndJoin();
          plexus_test::Drop(sub);
          break;
      }
    }
    stop.store(true);
    publisher.join();
    reader.join();
    EXPECT_TRUE(plexus_test::WaitForTopicGone(output_id));
  } while (std::next_permutation(order.begin(), order.end()));
}

// The original topic's fan-out calls its caching topic directly: UnsubscribeAndJoin, racing
// publishers (directly and through a forward into the original), ends caching for good when it
// returns, and no publish is cached twice or lost before it.
TEST(CacheStress, InlineCachingEndsWhenUnsubscribeAndJoinReturns) {
  for (int round = 0; round < plexus_test::BusScaled(20); ++round) {
    Ref<Cache> cache = Cache::Create([](const Message& m) {
      const Stamp* s = StampType().Get(m);
      return s != nullptr ? std::to_string(s->id % 64) : std::string();
    });
    Ref<Topic> topic = Topic::Create("stress-inline");
    Ref<Topic> child = Topic::Create("stress-inline-child");
    Forward forward = ForwardAll(child, topic);
    Ref<CachingTopic> caching = CachingTopic::Create(topic, cache);
    plexus_test::Counter updates;
    Subscription sub = Subscribe(
        caching->Output(),
        [&](const Message& m) {
          if (CacheUpdateType().Get(m) != nullptr) updates.Add();
        },
        plexus_test::InMode(DeliveryMode::kSynchronous));
    std::atomic<bool> stop{false};
    std::atomic<int> after{0};  // publishes started after UnsubscribeAndJoin returned
    std::atomic<bool> unsubscribed{false};
    auto publish = [&](const Ref<Topic>& t, int writer) {
      for (int i = 0; !stop.load(); ++i) {
        const bool late = unsubscribed.load();
        t->Publish(StampType(), Stamp{i, writer, i, i * 1000 + writer});
        if (late) after.fetch_add(1);
      }
    };
    std::thread a(publish, topic, 0);
    std::thread b(publish, child, 1);
    ASSERT_TRUE(plexus_test::WaitUntil([&] { return caching->Stats().cached >= 200; }));
    ASSERT_TRUE(caching->UnsubscribeAndJoin());
    const CacheStats at_join = cache->Stats();
    const std::uint64_t updates_at_join = caching->Stats().updates_published;
    unsubscribed.store(true);
    ASSERT_TRUE(plexus_test::WaitUntil([&] { return after.load() >= 200; }));
    stop.store(true);
    a.join();
    b.join();
    EXPECT_EQ(cache->Stats().puts, at_join.puts);
    EXPECT_EQ(caching->Stats().cached, at_join.puts);
    EXPECT_EQ(caching->Stats().updates_published, updates_at_join);
    EXPECT_EQ(updates.Value(), updates_at_join);
    EXPECT_EQ(topic->SubscriberCount(), 0u);
  }
}

// The cache pattern's handles (all, one object, a subscriber of "all") dropped in every order
// while the object's topic is published on.
TEST(CacheStress, CA09_PatternTeardownInEveryOrderUnderLoad) {
  std::array<int, 3> order = {0, 1, 2};
  do {
    auto all = CachePatternAll::Create("stress-objects", [](const Message& m) {
      const Stamp* s = StampType().Get(m);
      return s != nullptr ? std::to_string(s->id % 16) : std::string();
    });
    auto one = CachePatternOne::Create(all, "stress-objects/1");
    const std::vector<std::uint64_t> ids = {all->GetTopic()->Id(), all->CachedTopic()->Id(),
                                            one->CachedTopic()->Id()};
    plexus_test::Counter seen;
    Subscription sub = Subscribe(all->GetTopic(), [&](const Message&) { seen.Add(); });
    std::atomic<bool> stop{false};
    std::thread publisher([&stop, t = one->GetTopic()] {
      for (int i = 0; !stop.load(); ++i) t->Publish(StampType(), Stamp{i, 0, i, i * 1000});
    });
    std::thread reader([&stop, c = all->GetCache()] {
      while (!stop.load()) c->Dump();
    });
    for (int handle : order) {
      switch (handle) {
        case 0:
          all.Reset();
          break;
        case 1:
          one.Reset();
          break;
        case 2:
          sub.UnsubscribeAndJoin();
          plexus_test::Drop(sub);
          break;
      }
    }
    stop.store(true);
    publisher.join();
    reader.join();
    for (std::uint64_t id : ids) EXPECT_TRUE(plexus_test::WaitForTopicGone(id)) << id;
  } while (std::next_permutation(order.begin(), order.end()));
}

}  // namespace
}  // namespace plexus
