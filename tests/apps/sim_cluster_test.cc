// Cluster cases through the real program (CL04, CL05): simulators as child processes on one
// nats-server, sharing their device states; each is watched through its operator view's
// /api/cluster section. Built where the simulator has the cluster part.

#if PLEXUS_SIM_CLUSTER

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../cluster/nats_test_server.h"
#include "../ops/ops_test_support.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sim_child.h"

namespace sim_test {
namespace {

using nlohmann::json;
using plexus::cluster::testing::NatsServer;

const std::string kIds[] = {"02:00:5e:00:00:01", "02:00:5e:00:00:02", "02:00:5e:00:00:03"};

// A simulator in the cluster, busy for long enough to be watched (it is stopped by the test),
// with its operator view on a port of its own.
struct Node {
  std::unique_ptr<SimChild> child;
  std::uint16_t port = 0;

  static std::unique_ptr<Node> Start(const std::string& nats, const std::string& id) {
    auto n = std::make_unique<Node>();
    n->child = std::make_unique<SimChild>(std::vector<std::string>{
        "--rate=40", "--duration=600", "--talk-ms=1000", "--devices=16", "--threads=2",
        "--report=json", "--listen=127.0.0.1:0", "--nats=" + nats, "--node-id=" + id,
        "--cluster=simtest", "--heartbeat-ms=200"});
    const std::string said = "operator view on http://127.0.0.1:";
    const bool up = n->child->WaitForStderrLine([&](const std::string& line) {
      const std::size_t at = line.find(said);
      if (at == std::string::npos) return false;
      n->port = static_cast<std::uint16_t>(std::stoi(line.substr(at + said.size())));
      return true;
    });
    EXPECT_TRUE(up) << n->child->Err();
    return up ? std::move(n) : nullptr;
  }

  json Cluster() const {
    const plexus_test::HttpResponse r = plexus_test::Get(port, "/api/cluster");
    if (r.status != 200) return json();
    return json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  }

  // Foreign snapshots of `id` in this node's cache; -1 when the node is not alive here.
  static long SnapshotsOf(const json& cluster, const std::string& id, bool need_alive) {
    if (!cluster.is_object()) return -1;
    for (const json& n : cluster["nodes"]) {
      if (n["node"] == id && (!need_alive || n["alive"] == true)) return n["snapshots"].get<long>();
    }
    return -1;
  }
};

// Polls `pred` until it holds; false after a deadline only a failure reaches.
bool Eventually(const std::function<bool()>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// Stops a simulator as an operator would and checks its report's cluster part.
void StopAndCheck(Node& node, const std::string& id) {
  node.child->Signal(SIGINT);
  ASSERT_EQ(node.child->Wait(), 0) << node.child->Out() << node.child->Err();
  const json report = json::parse(node.child->Out(), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(report.is_discarded()) << node.child->Out();
  EXPECT_EQ(report["ok"], true) << report["invariants"];
  const json& cluster = report["cluster"];
  EXPECT_EQ(cluster["node"], id);
  EXPECT_EQ(cluster["rejects_total"], 0);
  EXPECT_GT(cluster["device_states_published"].get<long>(), 0);
  const json& topic = cluster["topics"][0];
  EXPECT_GT(topic["messages_out"].get<long>(), 0);
  // The NATS messages that carried them: batches of several frames, or lone frames.
  EXPECT_GT(topic["batches_out"].get<long>(), 0) << topic;
  EXPECT_LE(topic["batches_out"].get<long>(), topic["messages_out"].get<long>()) << topic;
}

TEST(Sim, CL05_SimulatorsShareDeviceStatesAndDropAKilledOne) {
  if (plexus::cluster::testing::NatsServerBinary().empty()) GTEST_SKIP() << "no nats-server";
  std::unique_ptr<NatsServer> server = NatsServer::Start({});
  ASSERT_NE(server, nullptr);
  auto a = Node::Start(server->Url(), kIds[0]);
  auto b = Node::Start(server->Url(), kIds[1]);
  ASSERT_TRUE(a && b);
  // Each sees the other, alive, with device snapshots of it in its cache.
  ASSERT_TRUE(Eventually([&] { return Node::SnapshotsOf(a->Cluster(), kIds[1], true) > 0; }))
      << a->Cluster();
  ASSERT_TRUE(Eventually([&] { return Node::SnapshotsOf(b->Cluster(), kIds[0], true) > 0; }))
      << b->Cluster();

  // The per-node record: its incarnation, a recent heartbeat, and the frames it sent here.
  ASSERT_TRUE(Eventually([&] {
    const json cluster = a->Cluster();
    for (const json& n : cluster["nodes"]) {
      if (n["node"] == kIds[1]) {
        return n["incarnation"] != "0" && n["last_heartbeat_ms_ago"].get<long>() >= 0 &&
               n["messages_in"].get<long>() > 0;
      }
    }
    return false;
  })) << a->Cluster();
  // Per topic, the frames sent and the NATS messages (batches, lone frames) that carried them.
  ASSERT_TRUE(Eventually([&] {
    const json cluster = a->Cluster();
    if (!cluster.is_object() || cluster["topics"].empty()) return false;
    const json& topic = cluster["topics"][0];
    return topic["batches_out"].get<long>() > 0 &&
           topic["batches_out"].get<long>() <= topic["messages_out"].get<long>();
  })) << a->Cluster();
  // And on /metrics: one series per peer, its incarnation a label.
  const plexus_test::HttpResponse metrics = plexus_test::Get(a->port, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const std::string field : {"messages_in", "last_heartbeat_ms_ago"}) {
    const std::string series = "plexus_section_cluster_nodes_" + field + "{incarnation=\"";
    const std::size_t at = metrics.body.find(series);
    ASSERT_NE(at, std::string::npos) << metrics.body;
    const std::string line = metrics.body.substr(at, metrics.body.find('\n', at) - at);
    EXPECT_NE(line.find("node=\"" + kIds[1] + "\""), std::string::npos) << line;
  }

  // CL04 through the program: a third node, joining late, gets both others' snapshots.
  auto c = Node::Start(server->Url(), kIds[2]);
  ASSERT_TRUE(c);
  ASSERT_TRUE(Eventually([&] {
    const json cluster = c->Cluster();
    return Node::SnapshotsOf(cluster, kIds[0], true) > 0 &&
           Node::SnapshotsOf(cluster, kIds[1], true) > 0;
  })) << c->Cluster();

  // CL05: B dies without a goodbye; A and C drop it and its snapshots once its heartbeats stop.
  b->child->Signal(SIGKILL);
  EXPECT_EQ(b->child->Wait(), 128 + SIGKILL);
  for (Node* survivor : {a.get(), c.get()}) {
    ASSERT_TRUE(Eventually([&] {
      const json cluster = survivor->Cluster();
      return cluster.is_object() && Node::SnapshotsOf(cluster, kIds[1], false) == -1 &&
             cluster["nodes_left"].get<long>() >= 1;
    })) << survivor->Cluster();
  }
  // The survivors still see each other.
  EXPECT_GE(Node::SnapshotsOf(a->Cluster(), kIds[2], true), 0);
  EXPECT_GE(Node::SnapshotsOf(c->Cluster(), kIds[0], true), 0);

  StopAndCheck(*a, kIds[0]);
  StopAndCheck(*c, kIds[2]);
}

TEST(Sim, OP03_BadClusterFlagsExitTwoNamingTheFlag) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--nats=127.0.0.1", "--nats"},
      {"--nats=nats://127.0.0.1:port", "--nats"},
      {"--nats=nats://127.0.0.1:4222,", "--nats"},
      {"--node-id=00:00:00:00:00:00", "--node-id"},
      {"--node-id=zz:00:00:00:00:01", "--node-id"},
      {"--cluster=a.b", "--cluster"},
      {"--heartbeat-ms=1", "--heartbeat-ms"},
      {"--node-id=02:00:5e:00:00:01", "--nats"}};
  ExpectEachFlagRefused(cases);
}

TEST(Sim, OP03_UnreachableNatsExitsTwo) {
  // A port nothing listens on: the simulator says so and runs no calls.
  const SimResult r = RunSim({"--nats=nats://127.0.0.1:1", "--node-id=02:00:5e:00:00:01"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("--nats"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

}  // namespace
}  // namespace sim_test

#endif  // PLEXUS_SIM_CLUSTER
