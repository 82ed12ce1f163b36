// ResyncGate without NATS: what it holds while a node resyncs, what it releases and in which
// order, and a live thread racing repeated resyncs.

#include "resync_gate.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "plexus/sync/mutex.h"

namespace plexus::cluster::cluster_internal {
namespace {

constexpr std::uint64_t kNodeA = 0xa;
constexpr std::uint64_t kNodeB = 0xb;

using Gate = ResyncGate<std::string>;

// Offers a frame as the live thread does; true if the gate kept it.
bool Offer(Gate& gate, std::uint64_t node, std::uint64_t seq, std::vector<std::string>& published) {
  std::string frame = "f" + std::to_string(seq);
  if (gate.Hold(node, seq, frame)) return true;
  published.push_back(frame);
  gate.EndLive();
  return false;
}

// Releases what is held as the bridge does: below `watermark` is stale.
void Release(Gate& gate, std::uint64_t watermark, std::vector<std::string>& published, int& stale) {
  std::vector<Gate::Held> batch;
  while (gate.TakeOrEnd(batch)) {
    for (const Gate::Held& h : batch) {
      if (h.seq < watermark) {
        ++stale;
      } else {
        published.push_back(h.frame);
      }
    }
    batch.clear();
  }
}

TEST(ResyncGate, LiveFramesPassWhenNothingResyncs) {
  Gate gate;
  std::vector<std::string> published;
  EXPECT_FALSE(Offer(gate, kNodeA, 1, published));
  EXPECT_FALSE(Offer(gate, kNodeB, 2, published));
  EXPECT_EQ(published, (std::vector<std::string>{"f1", "f2"}));
  EXPECT_EQ(gate.HeldTotal(), 0u);
  EXPECT_FALSE(gate.Resyncing());
}

TEST(ResyncGate, HoldsOnlyTheResyncingNodesFrames) {
  Gate gate;
  std::vector<std::string> published;
  gate.Begin(kNodeA);
  EXPECT_TRUE(gate.Resyncing());
  EXPECT_TRUE(Offer(gate, kNodeA, 5, published));
  EXPECT_FALSE(Offer(gate, kNodeB, 6, published));
  EXPECT_EQ(published, (std::vector<std::string>{"f6"}));
  EXPECT_EQ(gate.HeldTotal(), 1u);
  int stale = 0;
  Release(gate, 0, published, stale);
  EXPECT_FALSE(gate.Resyncing());
}

TEST(ResyncGate, FramesBelowTheWatermarkAreStaleTheRestFollowInOrder) {
  Gate gate;
  std::vector<std::string> published;
  gate.Begin(kNodeA);
  for (std::uint64_t seq : {3, 4, 7, 8, 9}) EXPECT_TRUE(Offer(gate, kNodeA, seq, published));
  published.push_back("dump");  // the dump, taken at 7, is installed here
  int stale = 0;
  Release(gate, 7, published, stale);
  EXPECT_EQ(stale, 2);
  EXPECT_EQ(published, (std::vector<std::string>{"dump", "f7", "f8", "f9"}));
  // Open again: the next frame is published live.
  EXPECT_FALSE(Offer(gate, kNodeA, 10, published));
  EXPECT_EQ(published.back(), "f10");
}

TEST(ResyncGate, TakeBelowHandsOutTheFramesSentBeforeTheDumpAndTheResyncGoesOn) {
  Gate gate;
  std::vector<std::string> published;
  gate.Begin(kNodeA);
  for (std::uint64_t seq : {3, 4, 7, 8}) EXPECT_TRUE(Offer(gate, kNodeA, seq, published));
  std::vector<Gate::Held> batch;
  ASSERT_TRUE(gate.TakeBelow(7, batch));
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].frame, "f3");
  EXPECT_EQ(batch[1].frame, "f4");
  batch.clear();
  EXPECT_FALSE(gate.TakeBelow(7, batch));
  EXPECT_TRUE(gate.Resyncing());
  EXPECT_TRUE(Offer(gate, kNodeA, 9, published));  // still held
  int stale = 0;
  Release(gate, 7, published, stale);
  EXPECT_EQ(stale, 0);
  EXPECT_EQ(published, (std::vector<std::string>{"f7", "f8", "f9"}));
}

TEST(ResyncGate, AFailedResyncReleasesEverythingAsLiveFrames) {
  Gate gate;
  std::vector<std::string> published;
  gate.Begin(kNodeA);
  for (std::uint64_t seq : {1, 2, 3}) EXPECT_TRUE(Offer(gate, kNodeA, seq, published));
  int stale = 0;
  Release(gate, /*no new watermark*/ 0, published, stale);
  EXPECT_EQ(stale, 0);
  EXPECT_EQ(published, (std::vector<std::string>{"f1", "f2", "f3"}));
  EXPECT_FALSE(gate.Resyncing());
}

TEST(ResyncGate, AResyncWithNothingHeldEndsAtOnce) {
  Gate gate;
  gate.Begin(kNodeA);
  std::vector<Gate::Held> batch;
  EXPECT_FALSE(gate.TakeOrEnd(batch));
  EXPECT_FALSE(gate.Resyncing());
}

TEST(ResyncGate, FramesHeldWhileABatchIsReleasedComeInTheNextBatch) {
  Gate gate;
  std::vector<std::string> published;
  gate.Begin(kNodeA);
  EXPECT_TRUE(Offer(gate, kNodeA, 1, published));
  std::vector<Gate::Held> batch;
  ASSERT_TRUE(gate.TakeOrEnd(batch));
  ASSERT_EQ(batch.size(), 1u);
  // Still resyncing while the first batch is out: a frame now waits behind it.
  EXPECT_TRUE(Offer(gate, kNodeA, 2, published));
  batch.clear();
  ASSERT_TRUE(gate.TakeOrEnd(batch));
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].seq, 2u);
  batch.clear();
  EXPECT_FALSE(gate.TakeOrEnd(batch));
  EXPECT_TRUE(published.empty());
}

TEST(ResyncGate, BeginWaitsForALivePublishThatMissedTheMark) {
  Gate gate;
  std::string frame = "f1";
  // The live thread passed the gate (nothing resyncing) and is publishing.
  ASSERT_FALSE(gate.Hold(kNodeA, 1, frame));
  std::atomic<bool> begun{false};
  std::thread resync([&] {
    gate.Begin(kNodeA);
    begun.store(true);
  });
  // Begin cannot return before the publish ends; the end lets it go.
  EXPECT_FALSE(begun.load());
  gate.EndLive();
  resync.join();
  EXPECT_TRUE(begun.load());
  std::string next = "f2";
  EXPECT_TRUE(gate.Hold(kNodeA, 2, next));
  std::vector<Gate::Held> batch;
  EXPECT_TRUE(gate.TakeOrEnd(batch));
  batch.clear();
  EXPECT_FALSE(gate.TakeOrEnd(batch));
}

// A serving node updates kObjects objects, each update a frame numbered in order; the live thread
// delivers the frames to a "local cache" while another thread resyncs over and over: marks the
// node, takes a dump (the watermark and each object's newest update, as the serving node's state
// is at that moment), installs what the cache lacks, and releases what was held. One resync in
// five fails (nothing installed). The local cache is plain data: the gate alone must keep the two
// threads apart (ThreadSanitizer checks it). Every frame is handled exactly once (published or
// stale), each object's versions are published strictly in order (nothing twice, no older one
// after a newer), and the cache ends with each object's newest version.
TEST(ResyncGate, StressALiveThreadRacesRepeatedResyncs) {
  constexpr int kObjects = 7;
  constexpr std::uint64_t kFrames = 20000;
  struct Update {
    int object = 0;
    std::uint64_t version = 0;
  };
  ResyncGate<Update> gate;

  struct Server {  // the serving node's state
    Mutex mu;
    std::uint64_t next_seq PLEXUS_GUARDED_BY(mu) = 1;
    std::map<int, std::uint64_t> newest PLEXUS_GUARDED_BY(mu);
  } server;

  // The local side, touched by whichever thread the gate lets publish.
  std::map<int, std::uint64_t> cache;
  std::uint64_t published = 0;
  std::uint64_t out_of_order = 0;
  std::uint64_t other_node = 0;
  std::uint64_t frames_sent = 0;  // the live thread's, read once it is joined
  auto publish = [&](const Update& u) {
    std::uint64_t& at = cache[u.object];
    if (u.version <= at) ++out_of_order;
    at = u.version;
    ++published;
  };
  std::atomic<std::uint64_t> watermark{0};  // written by the resync thread only
  std::uint64_t frames_handled = 0;         // published or stale, each frame once
  std::uint64_t stale = 0;
  auto handle_frame = [&](std::uint64_t seq, const Update& u) {
    if (seq < watermark.load(std::memory_order_acquire)) {
      ++stale;
    } else {
      publish(u);
    }
    ++frames_handled;
  };
  std::atomic<bool> done{false};
  std::atomic<int> resyncs{0};

  std::thread live([&] {
    // At least kFrames, and on until the resync thread has run a few times.
    for (std::uint64_t i = 0; i < kFrames || resyncs.load() < 20; ++i) {
      ++frames_sent;
      if (i % 4 == 3) {
        // Another node's frame: never held.
        Update other{-1, i};
        ASSERT_FALSE(gate.Hold(kNodeB, i, other));
        ++other_node;
        gate.EndLive();
        continue;
      }
      Update u;
      {
        MutexLock lock(server.mu);
        u.version = server.next_seq++;
        u.object = static_cast<int>(u.version % kObjects);
        server.newest[u.object] = u.version;
      }
      const std::uint64_t seq = u.version;
      if (gate.Hold(kNodeA, seq, u)) continue;
      handle_frame(seq, u);
      gate.EndLive();
    }
    done.store(true);
  });

  while (!done.load()) {
    const int n = resyncs.fetch_add(1) + 1;
    const std::uint64_t held_before = gate.HeldTotal();
    gate.Begin(kNodeA);
    // Every other time, the dump waits for a frame to be held first: that frame is older than
    // the dump, and the overlap does not depend on how the threads are scheduled.
    if (n % 2 == 0) {
      while (gate.HeldTotal() == held_before && !done.load()) std::this_thread::yield();
    }
    std::uint64_t w = 0;
    std::map<int, std::uint64_t> dump;
    {
      MutexLock lock(server.mu);
      w = server.next_seq;
      dump = server.newest;
    }
    if (n % 5 != 0) {
      // As the bridge does: what was sent before the dump first, then the dump.
      std::vector<ResyncGate<Update>::Held> before;
      while (gate.TakeBelow(w, before)) {
        for (const auto& h : before) handle_frame(h.seq, h.frame);
        before.clear();
      }
      watermark.store(w, std::memory_order_release);
      for (const auto& [object, version] : dump) {
        auto it = cache.find(object);
        if (it != cache.end() && it->second == version) continue;  // already cached
        publish(Update{object, version});
      }
    }
    std::vector<ResyncGate<Update>::Held> batch;
    while (gate.TakeOrEnd(batch)) {
      for (const auto& h : batch) handle_frame(h.seq, h.frame);
      batch.clear();
    }
  }
  live.join();

  EXPECT_EQ(out_of_order, 0u);
  MutexLock lock(server.mu);
  for (const auto& [object, version] : server.newest) {
    EXPECT_EQ(cache[object], version) << object;
  }
  const std::uint64_t node_a_frames = server.next_seq - 1;
  EXPECT_EQ(frames_handled, node_a_frames);
  EXPECT_EQ(other_node + node_a_frames, frames_sent);
  EXPECT_GT(gate.HeldTotal(), 0u);  // the race was run, not dodged
  EXPECT_GT(published, 0u);
  EXPECT_FALSE(gate.Resyncing());
}

}  // namespace
}  // namespace plexus::cluster::cluster_internal
