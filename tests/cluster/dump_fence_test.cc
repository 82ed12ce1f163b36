// DumpFence without NATS: a dump waits for a send that missed the fence, a send waits for the
// dump, and publishers racing repeated dumps leave each dump's watermark splitting the frames
// cleanly.

#include "dump_fence.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "plexus/sync/mutex.h"

namespace plexus::cluster::cluster_internal {
namespace {

TEST(DumpFence, SendsPassWhileNoDumpIsTaken) {
  DumpFence fence;
  fence.Enter();
  fence.Exit();
  fence.Close();
  fence.Open();
  fence.Enter();
  fence.Exit();
}

TEST(DumpFence, CloseWaitsForASendThatMissedIt) {
  DumpFence fence;
  fence.Enter();  // a send is running
  std::atomic<bool> closed{false};
  std::thread dump([&] {
    fence.Close();
    closed.store(true);
  });
  EXPECT_FALSE(closed.load());  // Close cannot return before the send ends
  fence.Exit();
  dump.join();
  EXPECT_TRUE(closed.load());
  fence.Open();
}

TEST(DumpFence, ASendWaitsForTheDump) {
  DumpFence fence;
  fence.Close();
  std::atomic<bool> sent{false};
  std::thread send([&] {
    fence.Enter();
    sent.store(true);
    fence.Exit();
  });
  EXPECT_FALSE(sent.load());  // Enter cannot return while the fence is closed
  fence.Open();
  send.join();
  EXPECT_TRUE(sent.load());
}

// Two publishers take turns on a "topic" (a mutex, as a topic's fan-out does): each caches a new
// version of an object, then numbers and logs its frame inside the fence. A dumper closes the
// fence, takes a watermark from the same counter, copies the cache and opens it again, over and
// over. For every dump: each frame numbered below the watermark is in it (or a newer version of
// its object), and of the frames numbered above it only the first may be.
TEST(DumpFence, StressDumpsSplitTheFramesAtTheirWatermark) {
  constexpr int kObjects = 5;
  constexpr int kPublishes = 4000;
  DumpFence fence;
  std::atomic<std::uint64_t> seq{1};
  struct Logged {
    std::uint64_t seq;
    int object;
    int version;
  };
  struct Topic {
    Mutex mu;
    int next_version PLEXUS_GUARDED_BY(mu) = 0;
    std::vector<Logged> log PLEXUS_GUARDED_BY(mu);
  } topic;
  struct Cache {
    Mutex mu;
    std::map<int, int> newest PLEXUS_GUARDED_BY(mu);
  } cache;
  struct Dump {
    std::uint64_t watermark;
    std::map<int, int> snapshots;
  };
  std::vector<Dump> dumps;
  std::atomic<int> publishers_done{0};

  auto publisher = [&] {
    for (int i = 0; i < kPublishes; ++i) {
      MutexLock fan_out(topic.mu);
      const int version = ++topic.next_version;
      const int object = version % kObjects;
      {
        MutexLock lock(cache.mu);
        cache.newest[object] = version;
      }
      fence.Enter();
      topic.log.push_back(Logged{seq.fetch_add(1), object, version});
      fence.Exit();
    }
    publishers_done.fetch_add(1);
  };
  std::thread p1(publisher);
  std::thread p2(publisher);
  while (dumps.size() < 200 && (publishers_done.load() < 2 || dumps.size() < 20)) {
    Dump d;
    fence.Close();
    d.watermark = seq.fetch_add(1);
    {
      MutexLock lock(cache.mu);
      d.snapshots = cache.newest;
    }
    fence.Open();
    dumps.push_back(std::move(d));
  }
  p1.join();
  p2.join();

  MutexLock lock(topic.mu);
  int ambiguous_in_dump = 0;
  for (const Dump& d : dumps) {
    bool first_above = true;
    for (const Logged& f : topic.log) {
      const auto it = d.snapshots.find(f.object);
      const bool in_dump = it != d.snapshots.end() && it->second >= f.version;
      if (f.seq < d.watermark) {
        ASSERT_TRUE(in_dump) << "frame " << f.seq << " below watermark " << d.watermark;
      } else {
        if (in_dump) {
          ASSERT_TRUE(first_above) << "frame " << f.seq << " above watermark " << d.watermark
                                   << " is in the dump but is not the first above it";
          ++ambiguous_in_dump;
        }
        first_above = false;
      }
    }
  }
  RecordProperty("first_frame_above_watermark_in_dump", ambiguous_in_dump);
}

}  // namespace
}  // namespace plexus::cluster::cluster_internal
