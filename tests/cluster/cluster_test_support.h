// What the cluster tests share beneath the bridge's nodes: a nats-server per test
// (START_SERVER), frames and batch containers built from their fields, and raw NATS publishes
// that reach a bridge without going through another one (for bytes no bridge would send).
//
// Thread safety: thread-compatible (each test drives these from its own thread).

#pragma once

#include <nats/nats.h>

#include <string>
#include <vector>

#include "cluster/nats_test_server.h"
#include "gtest/gtest.h"
#include "plexus/bus/node_id.h"
#include "plexus/cluster/wire.h"

// Starts a nats-server as `server` (a std::unique_ptr<NatsServer>), or skips the test where
// there is no nats-server binary.
#define START_SERVER(server)                                       \
  if (::plexus::cluster::testing::NatsServerBinary().empty()) {    \
    GTEST_SKIP() << "no nats-server";                              \
  }                                                                \
  auto server = ::plexus::cluster::testing::NatsServer::Start({}); \
  ASSERT_NE(server, nullptr)

namespace plexus::cluster::testing {

// The bytes EncodeFrame writes for `frame`: Encoded({.node = n, .seq = 1, .payload = "{}"}).
inline std::string Encoded(const Frame& frame) {
  std::string out;
  EncodeFrame(frame, out);
  return out;
}

// A batch container of `node` holding `frames` (encoded frames, any node's), in order.
inline std::string BatchOf(const NodeId& node, const std::vector<std::string>& frames) {
  std::string batch;
  BeginBatch(node, batch);
  for (const std::string& f : frames) AppendToBatch(f, batch);
  return batch;
}

// Publishes each of `messages` on `subject` through a plain connection of its own, and returns
// once the server has them.
inline void PublishRaw(const std::string& url, const std::string& subject,
                       const std::vector<std::string>& messages) {
  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, url.c_str()), NATS_OK);
  for (const std::string& m : messages) {
    ASSERT_EQ(natsConnection_Publish(nc, subject.c_str(), m.data(), static_cast<int>(m.size())),
              NATS_OK);
  }
  ASSERT_EQ(natsConnection_FlushTimeout(nc, 5000), NATS_OK);
  natsConnection_Destroy(nc);
}

}  // namespace plexus::cluster::testing
