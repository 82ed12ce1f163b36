#include "cluster.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>

#include "plexus/bus/node_id.h"

#if PLEXUS_SIM_CLUSTER
#include <nlohmann/json.hpp>

#include "plexus/bus/cache.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/json.h"
#include "plexus/bus/message.h"
#include "plexus/bus/topic.h"
#include "plexus/cluster/bridge.h"
#include "plexus/cluster/codec.h"
#include "plexus/sync/mutex.h"
#endif

namespace sim {

std::string ValidateNatsServers(const std::string& servers) {
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = servers.find(',', start);
    const std::string url =
        servers.substr(start, comma == std::string::npos ? comma : comma - start);
    const std::size_t scheme = url.find("://");
    const std::size_t colon = url.rfind(':');
    if (url.empty() || scheme == std::string::npos || colon <= scheme || colon + 1 == url.size() ||
        url.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
      return "expected nats://HOST:PORT[,nats://HOST:PORT...], got '" + url + "'";
    }
    if (comma == std::string::npos) return {};
    start = comma + 1;
  }
}

std::string ValidateNodeId(const std::string& node) {
  const std::optional<plexus::NodeId> id = plexus::NodeId::Parse(node);
  if (!id) return "expected six hexadecimal bytes aa:bb:cc:dd:ee:ff, got '" + node + "'";
  if (id->IsNone()) return "the node id must not be all zero";
  return {};
}

std::string ValidateClusterName(const std::string& cluster) {
  if (cluster.empty()) return "the cluster name must not be empty";
  for (const char ch : cluster) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
    if (!ok) return "'" + cluster + "': letters, digits, '-' and '_' only";
  }
  return {};
}

#if !PLEXUS_SIM_CLUSTER

bool ClusterAvailable() {
  return false;
}

std::unique_ptr<SimCluster> SimCluster::Start(const ClusterOptions&) {
  std::fprintf(stderr, "plexus_sim: --nats: this build has no cluster layer (libnats missing)\n");
  return nullptr;
}

#else

namespace {

// A device's state on one node. Crosses between nodes in 5 bytes (binary codec).
struct DeviceState {
  std::uint32_t device = 0;
  bool in_use = false;
};

const plexus::TypedMessageType<DeviceState>& DeviceStateType() {
  static const auto type = plexus::TypedMessageType<DeviceState>::Create(
      "SimDeviceState", {.to_json = plexus::JsonFormatter<DeviceState>([](const DeviceState& d) {
                           return nlohmann::json{{"device", d.device}, {"in_use", d.in_use}};
                         })});
  return type;
}

plexus::cluster::CodecRegistry DeviceCodecs() {
  plexus::cluster::CodecRegistry codecs;
  codecs.Add(plexus::cluster::BinaryCodec(
      DeviceStateType(),
      [](const DeviceState& d, std::string& out) {
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((d.device >> (8 * i)) & 0xff));
        out.push_back(d.in_use ? 1 : 0);
      },
      [](std::string_view in) -> std::optional<DeviceState> {
        if (in.size() != 5 || static_cast<unsigned char>(in[4]) > 1) return std::nullopt;
        DeviceState d;
        for (int i = 0; i < 4; ++i) {
          d.device |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
        }
        d.in_use = in[4] == 1;
        return d;
      }));
  return codecs;
}

class BridgedCluster final : public SimCluster {
 public:
  bool Init(const ClusterOptions& options) {
    node_ = options.node.empty() ? plexus::NodeId::Local() : *plexus::NodeId::Parse(options.node);
    topic_ = plexus::Topic::Create("devices", "device states, shared between the nodes");
    cache_ = plexus::Cache::Create(
        [](const plexus::Message& m) -> std::string {
          const DeviceState* d = DeviceStateType().Get(m);
          return d != nullptr ? std::to_string(d->device) : std::string();
        },
        [](const plexus::CacheEntry& entry,
           const plexus::Ref<plexus::Message>&) -> plexus::Ref<plexus::Message> {
          bool in_use = false;
          for (const plexus::Ref<plexus::Message>& m : entry.All()) {
            in_use = in_use || DeviceStateType().Get(*m)->in_use;
          }
          const plexus::Ref<plexus::Message>& old = entry.Aggregate();
          if (old != nullptr && DeviceStateType().Get(*old)->in_use == in_use) return old;
          return plexus::Message::Create(
              DeviceStateType().get(),
              DeviceState{static_cast<std::uint32_t>(std::stoul(entry.Id())), in_use},
              plexus::NodeId::None());
        },
        nullptr, node_);
    caching_ = plexus::CachingTopic::Create(topic_, cache_);
    plexus::cluster::BridgeOptions o;
    o.servers = options.servers;
    o.cluster = options.cluster;
    o.node = node_;
    o.heartbeat_interval = std::chrono::milliseconds(options.heartbeat_ms);
    // Generous: a loaded machine must not see its peers flap.
    o.heartbeat_miss_limit = 5;
    o.codecs = DeviceCodecs();
    bridge_ = plexus::cluster::Bridge::Create(std::move(o));
    if (bridge_ == nullptr || !bridge_->AddTopic(topic_, {.caching = caching_})) return false;
    return true;
  }

  ~BridgedCluster() override { Stop(); }

  void Publish(std::uint32_t device, bool in_use) override {
    published_.fetch_add(1, std::memory_order_relaxed);
    (void)topic_->Publish(
        plexus::Message::Create(DeviceStateType().get(), DeviceState{device, in_use}, node_));
  }

  ClusterFigures Figures() const override {
    ClusterFigures f;
    f.node = node_.ToString();
    f.device_states_published = published_.load(std::memory_order_relaxed);
    std::optional<plexus::cluster::BridgeStats> stats;
    {
      plexus::MutexLock lock(mu_);
      stats = final_stats_;
    }
    if (!stats && bridge_ != nullptr) stats = bridge_->Stats();
    if (stats) {
      const plexus::cluster::BridgeStats& s = *stats;
      f.incarnation = s.incarnation;
      for (const plexus::NodeId& n : s.nodes) f.nodes.push_back(n.ToString());
      for (const auto& p : s.peers) {
        f.peers[p.node.ToString()] = {p.incarnation, p.since_heartbeat.count(), p.messages_in};
      }
      f.nodes_joined = s.nodes_joined;
      f.nodes_left = s.nodes_left;
      for (const auto& t : s.topics) {
        f.topics.push_back({t.topic, t.subject, t.messages_in, t.messages_out, t.batches_out,
                            t.encode_failures, t.send_failures, t.nats_dropped});
      }
      for (std::size_t r = 0; r < s.rejects.size(); ++r) {
        if (s.rejects[r] == 0) continue;
        f.rejects[std::string(plexus::cluster::RejectReasonName(
            static_cast<plexus::cluster::RejectReason>(r)))] = s.rejects[r];
      }
      f.rejects_total = s.rejects_total;
      f.resyncs = s.resyncs;
      f.resync_failures = s.resync_failures;
      f.snapshots_resynced = s.snapshots_resynced;
      f.reconnects = s.reconnects;
      f.disconnects = s.disconnects;
      f.slow_consumer_events = s.slow_consumer_events;
    }
    if (cache_ != nullptr) {
      for (const auto& entry : cache_->DumpEntries(DeviceStateType().get())) {
        f.foreign_snapshots += entry->Foreign().size();
        for (const auto& foreign : entry->Foreign()) ++f.snapshots_by_node[foreign.node.ToString()];
        if (entry->Local() != nullptr && DeviceStateType().Get(*entry->Local())->in_use) {
          ++f.local_in_use;
        }
        if (entry->Aggregate() != nullptr && DeviceStateType().Get(*entry->Aggregate())->in_use) {
          ++f.in_use_anywhere;
        }
      }
    }
    return f;
  }

  std::string Json() const override {
    const ClusterFigures f = Figures();
    std::uint64_t in = 0, out = 0, lost = 0;
    nlohmann::json topics = nlohmann::json::array();
    for (const auto& t : f.topics) {
      in += t.messages_in;
      out += t.messages_out;
      lost += t.send_failures + static_cast<std::uint64_t>(t.nats_dropped);
      topics.push_back({{"topic", t.name},
                        {"subject", t.subject},
                        {"messages_in", t.messages_in},
                        {"messages_out", t.messages_out},
                        {"batches_out", t.batches_out},
                        {"send_failures", t.send_failures},
                        {"nats_dropped", t.nats_dropped}});
    }
    // The nodes alive, and those whose snapshots are still here (briefly, while a leave clears).
    std::map<std::string, bool> known;
    for (const std::string& n : f.nodes) known[n] = true;
    for (const auto& [n, count] : f.snapshots_by_node) known.emplace(n, false);
    nlohmann::json nodes = nlohmann::json::array();
    for (const auto& [n, alive] : known) {
      const auto it = f.snapshots_by_node.find(n);
      const auto peer = f.peers.find(n);
      const ClusterFigures::Peer p = peer == f.peers.end() ? ClusterFigures::Peer{} : peer->second;
      nodes.push_back({{"node", n},
                       {"alive", alive},
                       {"snapshots", it == f.snapshots_by_node.end() ? 0 : it->second},
                       {"incarnation", std::to_string(p.incarnation)},
                       {"last_heartbeat_ms_ago", p.since_heartbeat_ms},
                       {"messages_in", p.messages_in}});
    }
    return nlohmann::json{{"node", f.node},
                          {"incarnation", std::to_string(f.incarnation)},
                          {"nodes_alive", f.nodes.size()},
                          {"nodes", nodes},
                          {"nodes_joined", f.nodes_joined},
                          {"nodes_left", f.nodes_left},
                          {"messages_in", in},
                          {"messages_out", out},
                          {"lost", lost},
                          {"rejected", f.rejects},
                          {"rejects_total", f.rejects_total},
                          {"resyncs", f.resyncs},
                          {"resync_failures", f.resync_failures},
                          {"reconnects", f.reconnects},
                          {"foreign_snapshots", f.foreign_snapshots},
                          {"local_in_use", f.local_in_use},
                          {"in_use_anywhere", f.in_use_anywhere},
                          {"topics", topics}}
        .dump();
  }

  void Stop() override {
    if (bridge_ == nullptr) return;
    {
      plexus::MutexLock lock(mu_);
      if (final_stats_) return;
    }
    // Taken before the bridge stops, which forgets the other nodes.
    plexus::cluster::BridgeStats stats = bridge_->Stats();
    {
      plexus::MutexLock lock(mu_);
      final_stats_ = std::move(stats);
    }
    bridge_->Stop();
    caching_->UnsubscribeAndJoin();
  }

 private:
  plexus::NodeId node_;
  plexus::Ref<plexus::Topic> topic_;
  plexus::Ref<plexus::Cache> cache_;
  plexus::Ref<plexus::CachingTopic> caching_;
  std::unique_ptr<plexus::cluster::Bridge> bridge_;
  std::atomic<std::uint64_t> published_{0};
  mutable plexus::Mutex mu_;
  std::optional<plexus::cluster::BridgeStats> final_stats_ PLEXUS_GUARDED_BY(mu_);
};

}  // namespace

bool ClusterAvailable() {
  return true;
}

std::unique_ptr<SimCluster> SimCluster::Start(const ClusterOptions& options) {
  auto cluster = std::make_unique<BridgedCluster>();
  if (!cluster->Init(options)) {
    std::fprintf(stderr, "plexus_sim: --nats: cannot join the cluster at %s\n",
                 options.servers.empty() ? "" : options.servers.front().c_str());
    return nullptr;
  }
  return cluster;
}

#endif

}  // namespace sim
