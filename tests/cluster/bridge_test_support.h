// What the bridge tests share: a device-state message type with a JSON codec, in-process nodes
// (a topic, a cache with an aggregate, a caching topic, a bridge and a recorder each), and a
// bounded wait on a condition.
//
// Thread safety: Recorder is thread-safe; the rest is driven by the test's thread.

#pragma once

#include <nats/nats.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/nats_test_server.h"
#include "gtest/gtest.h"
#include "plexus/bus/cache.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/json.h"
#include "plexus/bus/message.h"
#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"
#include "plexus/cluster/bridge.h"
#include "plexus/cluster/codec.h"
#include "plexus/core/config.h"
#include "plexus/sync/mutex.h"

namespace plexus::cluster::testing {

struct DeviceState {
  std::string device;
  int state = 0;  // 0: idle; anything else: in use
};

inline const TypedMessageType<DeviceState>& DeviceStateType() {
  static const auto type = TypedMessageType<DeviceState>::Create(
      "TestDeviceState", {.to_json = JsonFormatter<DeviceState>([](const DeviceState& d) {
                            return nlohmann::json{{"device", d.device}, {"state", d.state}};
                          })});
  return type;
}

// A JSON codec whose parser refuses a negative state (so a test can send a payload the type
// refuses).
inline CodecRegistry DeviceCodecs() {
  CodecRegistry codecs;
  codecs.Add(
      JsonCodec(DeviceStateType(), [](const nlohmann::json& j) -> std::optional<DeviceState> {
        DeviceState d{j.at("device").get<std::string>(), j.at("state").get<int>()};
        if (d.state < 0) return std::nullopt;
        return d;
      }));
  return codecs;
}

inline NodeId TestNode(int i) {
  return NodeId(NodeId::Bytes{0x02, 0x00, 0x5e, 0x00, 0x00, static_cast<std::uint8_t>(i)});
}

// Waits until `pred` holds; false after `within` (which only a failure reaches). Sanitized
// builds run the bridge several times slower, on a machine that runs other tests at once, so
// their bound is longer: it is an upper bound on a failure, never a measure of speed.
inline bool WaitUntil(const std::function<bool()>& pred,
                      std::chrono::milliseconds within = std::chrono::seconds(10)) {
  if (kSanitizeThread || kSanitizeAddress) within *= 4;
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// Every DeviceState message a topic carries.
class Recorder {
 public:
  explicit Recorder(const Ref<Topic>& topic) {
    SubscriptionOptions o;
    o.mode = DeliveryMode::kSynchronous;
    sub_ = Subscription::Create(
        topic,
        [this](const Message& m, bool) {
          if (DeviceStateType().Get(m) == nullptr) return;
          MutexLock lock(mu_);
          got_.push_back(Ref<Message>(const_cast<Message*>(&m)));
        },
        o);
  }
  ~Recorder() { sub_.UnsubscribeAndJoin(); }

  std::vector<Ref<Message>> Got() const {
    MutexLock lock(mu_);
    return got_;
  }
  std::size_t Count() const {
    MutexLock lock(mu_);
    return got_.size();
  }
  std::size_t CountFrom(const NodeId& node) const {
    MutexLock lock(mu_);
    std::size_t n = 0;
    for (const auto& m : got_) n += m->Node() == node ? 1 : 0;
    return n;
  }

 private:
  mutable Mutex mu_;
  std::vector<Ref<Message>> got_ PLEXUS_GUARDED_BY(mu_);
  Subscription sub_;
};

// One in-process node: its "devices" topic, a cache of device states with an "in use
// anywhere" aggregate, and a bridge of its own.
struct Node {
  NodeId id;
  Ref<Topic> devices;
  Ref<Cache> cache;
  Ref<CachingTopic> caching;
  std::unique_ptr<Recorder> recorder;
  std::unique_ptr<Bridge> bridge;

  // Builds the node without a bridge (Connect makes it).
  static std::unique_ptr<Node> Make(int index) {
    auto n = std::make_unique<Node>();
    n->id = TestNode(index);
    n->devices = Topic::Create("devices");
    n->cache = Cache::Create(
        [](const Message& m) -> std::string {
          const DeviceState* d = DeviceStateType().Get(m);
          return d != nullptr ? d->device : std::string();
        },
        [](const CacheEntry& entry, const Ref<Message>&) -> Ref<Message> {
          int in_use = 0;
          for (const Ref<Message>& m : entry.All()) {
            if (DeviceStateType().Get(*m)->state != 0) in_use = 1;
          }
          return Message::Create(DeviceStateType().get(), DeviceState{entry.Id(), in_use},
                                 NodeId::None());
        },
        nullptr, n->id);
    n->caching = CachingTopic::Create(n->devices, n->cache);
    n->recorder = std::make_unique<Recorder>(n->devices);
    return n;
  }

  static BridgeOptions Options(std::vector<std::string> servers, const NodeId& id) {
    BridgeOptions o;
    o.servers = std::move(servers);
    o.cluster = "test";
    o.node = id;
    // Short enough for the leave cases, long enough that a loaded machine does not see nodes
    // flap.
    o.heartbeat_interval = std::chrono::milliseconds(100);
    o.heartbeat_miss_limit = 20;
    o.reconnect_wait = std::chrono::milliseconds(50);
    // A resync that times out is retried while messages flow, which is where the bridge's known
    // resync races live: give sanitized builds on a busy machine room to answer the first time.
    if (kSanitizeThread || kSanitizeAddress) o.request_timeout = std::chrono::seconds(8);
    o.codecs = DeviceCodecs();
    return o;
  }

  // Whether Connect bridges the topic with its cache (a resync fills the cache with what the
  // other nodes hold) or without (no resync runs: only live frames arrive).
  enum Bridged : bool { kWithoutCache = false, kWithCache = true };

  bool Connect(std::vector<std::string> servers,
               const std::function<void(BridgeOptions&)>& tweak = nullptr,
               Bridged bridged = kWithCache) {
    BridgeOptions o = Options(std::move(servers), id);
    if (tweak) tweak(o);
    bridge = Bridge::Create(std::move(o));
    if (bridge == nullptr) return false;
    return bridged == kWithCache ? bridge->AddTopic(devices, {.caching = caching})
                                 : bridge->AddTopic(devices);
  }

  void Publish(const std::string& device, int state) {
    devices->Publish(Message::Create(DeviceStateType().get(), DeviceState{device, state}, id));
  }

  // The state of `device` in this node's cache as `node` last said it, or nullopt.
  std::optional<int> StateFrom(const NodeId& node, const std::string& device) const {
    Ref<Message> m = cache->GetByNode(DeviceStateType().get(), device, node);
    if (m == nullptr) return std::nullopt;
    return DeviceStateType().Get(*m)->state;
  }
  std::size_t CountFrom(const NodeId& node) const {
    return cache->DumpByNode(DeviceStateType().get(), node).size();
  }

  ~Node() {
    bridge.reset();
    recorder.reset();
    if (caching != nullptr) caching->UnsubscribeAndJoin();
  }
};

// nats_CloseAndWait belongs at process end, after every bridge stopped.
class NatsEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { nats_CloseAndWait(5000); }
};

}  // namespace plexus::cluster::testing
