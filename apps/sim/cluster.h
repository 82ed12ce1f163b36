// The simulator's cluster part (--nats): the device states, shared between simulator processes
// through a plexus::cluster::Bridge.
//
// Each device-state change the device router sees (a device going in use, or idle again) is
// published as a DeviceState on the "devices" topic, made by this node (--node-id). A caching
// topic keeps them in a cache whose local node is this node, with an aggregate per device ("in
// use if any node has it in use"); the bridge carries the topic to the other simulators on the
// same NATS server (or cluster), so each node's cache holds the others' snapshots as foreign
// ones, and drops them when a node leaves or stops sending heartbeats.
//
// Built only where plexus::cluster is (PLEXUS_SIM_CLUSTER, set by apps/CMakeLists.txt); without
// it, Start refuses with a message and the simulator exits 2.
//
// Thread safety: Publish, Figures and Json from any thread; Start and Stop from the thread that
// runs the simulation.

#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sim {

struct ClusterOptions {
  std::vector<std::string> servers;  // NATS URLs
  std::string node;                  // "aa:bb:cc:dd:ee:ff"; empty: this host's node id
  std::string cluster = "plexus";
  std::uint32_t heartbeat_ms = 1000;
};

// Whether the simulator was built with the cluster part.
bool ClusterAvailable();

// "" if `servers` (comma-separated NATS URLs) is usable, else why not.
std::string ValidateNatsServers(const std::string& servers);
// "" if `node` is a usable node id (six hexadecimal bytes, not all zero), else why not.
std::string ValidateNodeId(const std::string& node);
// "" if `cluster` is a usable cluster name (letters, digits, '-' and '_'), else why not.
std::string ValidateClusterName(const std::string& cluster);

// What the cluster did, for the report.
struct ClusterFigures {
  struct Topic {
    std::string name;
    std::string subject;
    std::uint64_t messages_in = 0, messages_out = 0;
    std::uint64_t batches_out = 0;  // NATS messages that carried messages_out
    std::uint64_t encode_failures = 0, send_failures = 0;
    std::int64_t nats_dropped = 0;
  };
  std::string node;
  std::uint64_t incarnation = 0;
  std::vector<std::string> nodes;  // the other nodes alive when the figures were taken
  std::uint64_t nodes_joined = 0, nodes_left = 0;
  std::vector<Topic> topics;
  std::map<std::string, std::uint64_t> rejects;  // per reason, the reasons seen
  std::uint64_t rejects_total = 0;
  std::uint64_t resyncs = 0, resync_failures = 0, snapshots_resynced = 0;
  std::uint64_t reconnects = 0, disconnects = 0, slow_consumer_events = 0;
  std::uint64_t device_states_published = 0;  // by this node
  std::uint64_t local_in_use = 0;             // devices this node has in use, in its cache
  std::uint64_t foreign_snapshots = 0;        // the other nodes' snapshots in the cache
  std::map<std::string, std::uint64_t> snapshots_by_node;  // the same, per node
  struct Peer {
    std::uint64_t incarnation = 0;
    std::int64_t since_heartbeat_ms = 0;
    std::uint64_t messages_in = 0;
  };
  std::map<std::string, Peer> peers;  // the nodes alive, by id
  std::uint64_t in_use_anywhere = 0;  // devices whose aggregate says in use
};

class SimCluster {
 public:
  // Connects and starts bridging; null, after a message on stderr, when it cannot.
  static std::unique_ptr<SimCluster> Start(const ClusterOptions& options);
  virtual ~SimCluster() = default;

  // A device of this node went in use (or idle).
  virtual void Publish(std::uint32_t device, bool in_use) = 0;
  // After Stop: the bridge's figures as they were when it stopped, and the cache's once every
  // device state published before Stop was cached.
  virtual ClusterFigures Figures() const = 0;
  // The operator view's "cluster" section.
  virtual std::string Json() const = 0;
  // Says goodbye to the other nodes, stops the bridge and lets go of the topic. Idempotent.
  virtual void Stop() = 0;
};

}  // namespace sim
