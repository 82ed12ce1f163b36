// Real nats-server processes for the cluster tests: a single server, or a cluster of servers
// routed to each other, on loopback ports picked at start, killed or stopped by the test.
//
// Thread safety: thread-compatible (a test drives its servers from one thread).

#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace plexus::cluster::testing {

// Path of the nats-server binary (PLEXUS_NATS_SERVER, else /usr/sbin/nats-server, else the
// PATH), or empty when there is none.
std::string NatsServerBinary();

class NatsServer {
 public:
  struct Options {
    std::string name = "n1";
    // Cluster membership: a cluster port of its own and the routes to every member (its own
    // route among them is ignored by nats-server). Empty cluster_name: a single server.
    std::string cluster_name;
    int cluster_port = 0;
    std::vector<int> route_ports;
    // A client port fixed in advance (to restart a server on the same port); 0: pick one.
    int client_port = 0;
  };

  // Starts a server and waits (bounded by `ready_within`) until it accepts clients and, in a
  // cluster, until it has routes to every other member that is running. Ports left 0 are
  // picked, again at each of a few attempts. Null on failure (the reason is written to
  // stderr, with the server's log).
  static std::unique_ptr<NatsServer> Start(
      Options options, std::chrono::milliseconds ready_within = std::chrono::seconds(20));

  ~NatsServer();  // Stop()s
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  std::string Url() const;  // "nats://127.0.0.1:<port>"
  int ClientPort() const noexcept;
  pid_t Pid() const noexcept;
  bool Running() const noexcept;

  void Kill();  // SIGKILL, then reaps it
  void Stop();  // SIGTERM, waits for it to exit (SIGKILL after a bound), reaps it
  // Starts it again with the same options and ports.
  bool Restart(std::chrono::milliseconds ready_within = std::chrono::seconds(20));

 private:
  friend class NatsCluster;  // waits for every member's routes once all are up
  NatsServer() = default;
  Options options_;
  std::string dir_;    // config and log; removed with the server
  int http_port_ = 0;  // monitoring (/healthz, /routez)
  pid_t pid_ = -1;
  bool Launch(std::chrono::milliseconds ready_within);
  bool WaitReady(std::chrono::milliseconds ready_within);
  void DumpLog(const std::string& why) const;
};

class NatsCluster {
 public:
  // `n` servers (n1..nN) routed to each other, every one ready with n-1 routes.
  static std::unique_ptr<NatsCluster> Start(
      int n = 3, std::chrono::milliseconds ready_within = std::chrono::seconds(30));
  NatsServer& Server(int i) { return *servers_.at(i); }
  int size() const noexcept { return static_cast<int>(servers_.size()); }
  std::vector<std::string> Urls() const;  // in server order

 private:
  static std::unique_ptr<NatsCluster> StartOnce(int n, std::chrono::milliseconds ready_within);
  std::vector<std::unique_ptr<NatsServer>> servers_;
};

// A free loopback TCP port (bound and released), never one this process was given before.
// Another process may still bind it first: Start and Restart start a server again on fresh
// ports when it could not bind.
int PickFreePort();

}  // namespace plexus::cluster::testing
