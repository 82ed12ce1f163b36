// The test servers themselves: a single nats-server carries a message between two libnats
// connections, a three-server cluster carries one from the first server to the third, and a
// killed server restarts on its port. Skipped (with the reason) where nats-server is missing.

#include "cluster/nats_test_server.h"

#include <nats/nats.h>

#include <chrono>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace plexus::cluster::testing {
namespace {

#define PLEXUS_SKIP_WITHOUT_NATS_SERVER()                                          \
  if (NatsServerBinary().empty())                                                  \
  GTEST_SKIP() << "nats-server not found (install Debian's nats-server, or point " \
                  "PLEXUS_NATS_SERVER at one)"

// One libnats connection, closed and destroyed with the scope.
class Connection {
 public:
  explicit Connection(const std::string& url) {
    status_ = natsConnection_ConnectTo(&nc_, url.c_str());
  }
  ~Connection() { natsConnection_Destroy(nc_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool ok() const { return status_ == NATS_OK; }
  const char* error() const { return natsStatus_GetText(status_); }
  natsConnection* get() const { return nc_; }

 private:
  natsConnection* nc_ = nullptr;
  natsStatus status_ = NATS_OK;
};

// A synchronous subscription, destroyed with the scope.
class SyncSubscription {
 public:
  SyncSubscription(const Connection& connection, const char* subject) {
    status_ = natsConnection_SubscribeSync(&sub_, connection.get(), subject);
    // The server has the interest once the flush's PONG is back.
    if (status_ == NATS_OK) status_ = natsConnection_FlushTimeout(connection.get(), 10000);
  }
  ~SyncSubscription() { natsSubscription_Destroy(sub_); }
  SyncSubscription(const SyncSubscription&) = delete;
  SyncSubscription& operator=(const SyncSubscription&) = delete;

  bool ok() const { return status_ == NATS_OK; }
  // The next message's data, or empty after `timeout_ms`.
  std::string Next(int64_t timeout_ms) {
    natsMsg* msg = nullptr;
    if (natsSubscription_NextMsg(&msg, sub_, timeout_ms) != NATS_OK) return {};
    std::string data(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    natsMsg_Destroy(msg);
    return data;
  }

 private:
  natsSubscription* sub_ = nullptr;
  natsStatus status_ = NATS_OK;
};

TEST(NatsTestServer, SingleServerCarriesAMessage) {
  PLEXUS_SKIP_WITHOUT_NATS_SERVER();
  std::unique_ptr<NatsServer> server = NatsServer::Start({});
  ASSERT_TRUE(server);
  EXPECT_TRUE(server->Running());
  EXPECT_GT(server->Pid(), 0);
  EXPECT_EQ(server->Url(), "nats://127.0.0.1:" + std::to_string(server->ClientPort()));

  Connection subscriber(server->Url());
  Connection publisher(server->Url());
  ASSERT_TRUE(subscriber.ok()) << subscriber.error();
  ASSERT_TRUE(publisher.ok()) << publisher.error();
  SyncSubscription sub(subscriber, "plexus.test.one");
  ASSERT_TRUE(sub.ok());
  ASSERT_EQ(natsConnection_PublishString(publisher.get(), "plexus.test.one", "hello"), NATS_OK);
  ASSERT_EQ(natsConnection_FlushTimeout(publisher.get(), 10000), NATS_OK);
  EXPECT_EQ(sub.Next(10000), "hello");
}

TEST(NatsTestServer, ClusterCarriesAMessageFromTheFirstServerToTheThird) {
  PLEXUS_SKIP_WITHOUT_NATS_SERVER();
  std::unique_ptr<NatsCluster> cluster = NatsCluster::Start(3);
  ASSERT_TRUE(cluster);
  ASSERT_EQ(cluster->size(), 3);
  EXPECT_EQ(cluster->Urls().size(), 3u);

  Connection subscriber(cluster->Server(2).Url());
  Connection publisher(cluster->Server(0).Url());
  ASSERT_TRUE(subscriber.ok()) << subscriber.error();
  ASSERT_TRUE(publisher.ok()) << publisher.error();
  SyncSubscription sub(subscriber, "plexus.test.routed");
  ASSERT_TRUE(sub.ok());
  // The subscription's interest reaches server 1 over the routes a moment after server 3 has
  // it, and a message published before that goes nowhere (at-most-once): publish until one
  // arrives, bounded.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string got;
  while (got.empty() && std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(natsConnection_PublishString(publisher.get(), "plexus.test.routed", "across"),
              NATS_OK);
    ASSERT_EQ(natsConnection_FlushTimeout(publisher.get(), 10000), NATS_OK);
    got = sub.Next(100);
  }
  EXPECT_EQ(got, "across");
}

TEST(NatsTestServer, KillAndRestartOnTheSamePort) {
  PLEXUS_SKIP_WITHOUT_NATS_SERVER();
  std::unique_ptr<NatsServer> server = NatsServer::Start({});
  ASSERT_TRUE(server);
  const int port = server->ClientPort();
  const pid_t first = server->Pid();

  server->Kill();
  EXPECT_FALSE(server->Running());
  {
    Connection refused(server->Url());
    EXPECT_FALSE(refused.ok());
  }

  ASSERT_TRUE(server->Restart());
  EXPECT_TRUE(server->Running());
  EXPECT_EQ(server->ClientPort(), port);
  EXPECT_NE(server->Pid(), first);
  Connection again(server->Url());
  ASSERT_TRUE(again.ok()) << again.error();
  SyncSubscription sub(again, "plexus.test.again");
  ASSERT_TRUE(sub.ok());
  ASSERT_EQ(natsConnection_PublishString(again.get(), "plexus.test.again", "back"), NATS_OK);
  EXPECT_EQ(sub.Next(10000), "back");
}

TEST(NatsTestServer, StopIsGracefulAndIdempotent) {
  PLEXUS_SKIP_WITHOUT_NATS_SERVER();
  std::unique_ptr<NatsServer> server = NatsServer::Start({});
  ASSERT_TRUE(server);
  server->Stop();
  EXPECT_FALSE(server->Running());
  server->Stop();
  server->Kill();
  EXPECT_FALSE(server->Running());
}

TEST(NatsTestServer, PickFreePortGivesALoopbackPort) {
  const int port = PickFreePort();
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
}

// The kernel may give the same ephemeral port to two binds in a row; a cluster's route port
// picked before a member's client port must never be picked again for it.
TEST(NatsTestServer, PickFreePortNeverGivesAPortTwice) {
  std::set<int> ports;
  for (int i = 0; i < 200; ++i) {
    const int port = PickFreePort();
    ASSERT_GT(port, 0);
    EXPECT_TRUE(ports.insert(port).second) << "port " << port << " given twice";
  }
}

}  // namespace
}  // namespace plexus::cluster::testing
