// The bridge's coalescing of topic traffic into batch containers: what a bridge sends in
// batches arrives complete and in order, Flush and Stop send a partial batch, a full batch goes
// at once, coalescing off sends a NATS message per frame, and a receiver checks containers (the
// container's part of CL08).

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cluster/bridge_test_support.h"
#include "cluster/cluster_test_support.h"
#include "cluster/nats_test_server.h"
#include "gtest/gtest.h"
#include "plexus/cluster/bridge.h"
#include "plexus/cluster/wire.h"

namespace plexus::cluster::testing {
namespace {

// A's frames wait in their batch until Flush, Stop, or a full batch sends them.
void NeverByTimer(BridgeOptions& o) {
  o.batch_delay = std::chrono::hours(1);
}

// Nodes 1 (A) and 2 (B), their topics bridged without their caches: no resync runs, so what
// reaches B's topic is A's live frames and nothing else (a resync's dump racing the live frames
// may deliver a message twice or make a live frame stale; see docs/architecture.md).
struct Pair {
  std::unique_ptr<Node> a = Node::Make(1);
  std::unique_ptr<Node> b = Node::Make(2);

  // B's subscription is known to the server when AddTopic returns, so A's frames reach it.
  bool Connect(NatsServer& server, const std::function<void(BridgeOptions&)>& tweak_a = nullptr,
               const std::function<void(BridgeOptions&)>& tweak_b = nullptr) {
    return b->Connect({server.Url()}, tweak_b, Node::kWithoutCache) &&
           a->Connect({server.Url()}, tweak_a, Node::kWithoutCache);
  }
  BridgeTopicStats Out() const { return a->bridge->Stats().topics.at(0); }
  // What B saw, for a failure's message.
  std::string Diagnostics() const {
    const BridgeStats st = b->bridge->Stats();
    const BridgeTopicStats& in = st.topics.at(0);
    return std::to_string(b->recorder->CountFrom(a->id)) +
           " arrived; B: " + std::to_string(in.messages_in) + " in, " + std::to_string(in.stale) +
           " stale, " + std::to_string(st.rejects_total) + " rejected, " +
           std::to_string(in.nats_dropped) + " dropped, " + std::to_string(st.resyncs) +
           " resyncs, " + std::to_string(st.snapshots_resynced) + " resynced, " +
           std::to_string(st.nodes_left) + " left; A: " + std::to_string(Out().messages_out) +
           " out, " + std::to_string(Out().batches_out) + " batches, " +
           std::to_string(Out().send_failures) + " failed";
  }
};

TEST(BridgeCoalescing, ManyPublishersArriveCompleteAndInOrderPerThread) {
  START_SERVER(server);
  Pair p;
  ASSERT_TRUE(p.Connect(*server));
  constexpr int kThreads = 4;
  constexpr int kEach = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&p, t] {
      for (int i = 1; i <= kEach; ++i) p.a->Publish("t" + std::to_string(t), i);
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(WaitUntil([&] { return p.b->recorder->CountFrom(p.a->id) == kThreads * kEach; }))
      << p.Diagnostics();
  std::map<std::string, int> last;
  for (const auto& m : p.b->recorder->Got()) {
    const DeviceState* d = DeviceStateType().Get(*m);
    EXPECT_EQ(d->state, last[d->device] + 1) << d->device;
    last[d->device] = d->state;
  }
  const BridgeTopicStats out = p.Out();
  EXPECT_EQ(out.messages_out, static_cast<std::uint64_t>(kThreads * kEach));
  EXPECT_LE(out.batches_out, out.messages_out);
  EXPECT_EQ(out.send_failures, 0u);
  EXPECT_EQ(p.b->bridge->Stats().topics.at(0).messages_in,
            static_cast<std::uint64_t>(kThreads * kEach));
  EXPECT_EQ(p.b->bridge->Stats().rejects_total, 0u);
}

TEST(BridgeCoalescing, FlushSendsAPartialBatchAsOneMessage) {
  START_SERVER(server);
  Pair p;
  ASSERT_TRUE(p.Connect(*server, NeverByTimer));
  constexpr int kCount = 50;
  for (int i = 1; i <= kCount; ++i) p.a->Publish("d", i);
  EXPECT_EQ(p.Out().messages_out, 0u);  // all waiting in the batch
  ASSERT_TRUE(p.a->bridge->Flush());
  EXPECT_EQ(p.Out().messages_out, static_cast<std::uint64_t>(kCount));
  EXPECT_EQ(p.Out().batches_out, 1u);
  ASSERT_TRUE(WaitUntil([&] { return p.b->recorder->CountFrom(p.a->id) == kCount; }))
      << p.Diagnostics();
  EXPECT_EQ(p.b->StateFrom(p.a->id, "d"), kCount);
}

TEST(BridgeCoalescing, ALoneFrameGoesAsItself) {
  START_SERVER(server);
  Pair p;
  // B refuses containers (none fits its limit), so only a plain frame gets through.
  ASSERT_TRUE(
      p.Connect(*server, NeverByTimer, [](BridgeOptions& o) { o.limits.max_batch_bytes = 0; }));
  p.a->Publish("d", 1);
  ASSERT_TRUE(p.a->bridge->Flush());
  ASSERT_TRUE(WaitUntil([&] { return p.b->recorder->CountFrom(p.a->id) == 1; })) << p.Diagnostics();
  EXPECT_EQ(p.b->bridge->Stats().rejects_total, 0u);
}

TEST(BridgeCoalescing, StopSendsAPartialBatch) {
  START_SERVER(server);
  Pair p;
  ASSERT_TRUE(p.Connect(*server, NeverByTimer));
  constexpr int kCount = 30;
  for (int i = 1; i <= kCount; ++i) p.a->Publish("d" + std::to_string(i), i);
  EXPECT_EQ(p.Out().messages_out, 0u);
  p.a->bridge->Stop();
  EXPECT_EQ(p.Out().messages_out, static_cast<std::uint64_t>(kCount));
  ASSERT_TRUE(WaitUntil([&] { return p.b->recorder->CountFrom(p.a->id) == kCount; }))
      << p.Diagnostics();
}

TEST(BridgeCoalescing, AFullBatchGoesAtOnce) {
  START_SERVER(server);
  Pair p;
  ASSERT_TRUE(p.Connect(*server, [](BridgeOptions& o) {
    NeverByTimer(o);
    o.batch_max_bytes = 1024;
  }));
  constexpr int kCount = 100;  // about 70 bytes a frame: several full batches and a partial one
  for (int i = 1; i <= kCount; ++i) p.a->Publish("d", i);
  const BridgeTopicStats out = p.Out();
  EXPECT_GT(out.messages_out, 0u);
  EXPECT_LT(out.messages_out, static_cast<std::uint64_t>(kCount));
  EXPECT_GT(out.batches_out, 1u);
  // What the full batches carried arrives without a flush, and the rest waits.
  ASSERT_TRUE(WaitUntil([&] { return p.b->recorder->CountFrom(p.a->id) == out.messages_out; }))
      << p.Diagnostics();
  ASSERT_TRUE(p.a->bridge->Flush());
  ASSERT_TRUE(WaitUntil([&] { return p.b->recorder->CountFrom(p.a->id) == kCount; }))
      << p.Diagnostics();
  EXPECT_EQ(p.b->StateFrom(p.a->id, "d"), kCount);
}

TEST(BridgeCoalescing, AFrameTooBigForABatchGoesAloneInOrder) {
  START_SERVER(server);
  Pair p;
  ASSERT_TRUE(p.Connect(*server, [](BridgeOptions& o) {
    NeverByTimer(o);
    o.batch_max_bytes = 256;
  }));
  p.a->Publish("small", 1);
  p.a->Publish(std::string(300, 'x'), 2);  // over the batch's size: sends "small" first
  EXPECT_EQ(p.Out().messages_out, 2u);
  EXPECT_EQ(p.Out().batches_out, 2u);
  ASSERT_TRUE(WaitUntil([&] { return p.b->recorder->CountFrom(p.a->id) == 2; })) << p.Diagnostics();
  const auto got = p.b->recorder->Got();
  EXPECT_EQ(DeviceStateType().Get(*got.at(0))->device, "small");
}

TEST(BridgeCoalescing, OffSendsAMessagePerFrame) {
  for (const bool send_asap : {false, true}) {
    START_SERVER(server);
    Pair p;
    ASSERT_TRUE(p.Connect(*server, [send_asap](BridgeOptions& o) {
      if (send_asap) {
        o.send_asap = true;  // the latency path: never coalesced
      } else {
        o.batch_delay = std::chrono::microseconds(0);
      }
    }));
    constexpr int kCount = 200;
    for (int i = 1; i <= kCount; ++i) p.a->Publish("d", i);
    EXPECT_EQ(p.Out().messages_out, static_cast<std::uint64_t>(kCount));  // no batch waits
    EXPECT_EQ(p.Out().batches_out, static_cast<std::uint64_t>(kCount));
    ASSERT_TRUE(WaitUntil([&] { return p.b->recorder->CountFrom(p.a->id) == kCount; }))
        << p.Diagnostics();
    EXPECT_EQ(p.b->StateFrom(p.a->id, "d"), kCount);
  }
}

// --- The receiver's side ------------------------------------------------------------------

std::string DeviceFrame(const NodeId& node, std::uint64_t seq, std::string_view payload) {
  return Encoded({.node = node, .seq = seq, .type_name = "TestDeviceState", .payload = payload});
}

TEST(BridgeCoalescing, CL08_MalformedContainersAreRefusedWholeAndValidOnesFollow) {
  START_SERVER(server);
  auto b = Node::Make(2);
  ASSERT_TRUE(b->Connect({server->Url()}, [](BridgeOptions& o) { o.limits.max_batch_frames = 4; }));
  const NodeId a = TestNode(1);
  const NodeId c = TestNode(3);
  auto frame = [&](const NodeId& node, int state) {
    return DeviceFrame(node, static_cast<std::uint64_t>(state),
                       R"({"device":"d","state":)" + std::to_string(state) + "}");
  };
  std::string truncated = BatchOf(a, {frame(a, 1), frame(a, 2)});
  truncated.pop_back();
  std::string trailing = BatchOf(a, {frame(a, 1)});
  trailing.push_back('x');
  const std::vector<std::string> messages = {
      truncated,       // truncated
      trailing,        // trailing bytes
      BatchOf(a, {}),  // empty
      BatchOf(a, {frame(a, 1), frame(a, 2), frame(a, 3), frame(a, 4), frame(a, 5)}),  // too many
      BatchOf(a, {frame(a, 1), frame(c, 2)}),  // a frame of another node
      BatchOf(a, {frame(a, 1), DeviceFrame(a, 2, "not json"), frame(a, 3)}),  // one bad frame
      BatchOf(c, {frame(c, 7), frame(c, 8)}),                                 // good
  };
  PublishRaw(server->Url(), b->bridge->SubjectFor("devices"), messages);
  ASSERT_TRUE(WaitUntil([&] { return b->recorder->CountFrom(c) == 2; }));
  const BridgeStats st = b->bridge->Stats();
  auto count = [&](RejectReason r) { return st.rejects[static_cast<std::size_t>(r)]; };
  EXPECT_EQ(count(RejectReason::kTruncated), 1u);
  EXPECT_EQ(count(RejectReason::kTrailingBytes), 1u);
  EXPECT_EQ(count(RejectReason::kBatchEmpty), 1u);
  EXPECT_EQ(count(RejectReason::kBatchTooManyFrames), 1u);
  EXPECT_EQ(count(RejectReason::kBatchNodeMismatch), 1u);
  EXPECT_EQ(count(RejectReason::kPayloadRefused), 1u);
  EXPECT_EQ(st.rejects_total, 6u);
  // Of the malformed containers nothing; of the one with a bad frame, the two good ones.
  std::vector<int> from_a;
  for (const auto& m : b->recorder->Got()) {
    if (m->Node() == a) from_a.push_back(DeviceStateType().Get(*m)->state);
  }
  EXPECT_EQ(from_a, (std::vector<int>{1, 3}));
  EXPECT_EQ(b->StateFrom(c, "d"), 8);
}

}  // namespace
}  // namespace plexus::cluster::testing
