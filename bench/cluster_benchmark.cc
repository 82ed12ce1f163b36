// Cluster-layer benchmarks: what the NATS transport costs on its own (the anchors every bridge
// row is read against) and what plexus's wire format adds per message. A nats-server is started
// by the benchmark itself on a picked loopback port (tests/cluster/nats_test_server.cc), once
// per process, and killed at exit.
//
// Rows:
//   BM_RawNats_PubSub       Two libnats connections to one server: each iteration publishes
//                           kBatch 128-byte messages on one and waits until an asynchronous
//                           subscription on the other has received all of them, so items/s is
//                           end-to-end throughput (default batching connection).
//   BM_RawNats_RequestReply One natsConnection_Request per iteration to a responder on a second
//                           connection that echoes the payload; both with SendAsap (without it
//                           libnats's flusher adds about 1 ms per hop). Counters p50_us and p99_us
//                           over every round trip of the run.
//   BM_Wire_EncodeJson      EncodeMessage of one message through its JSON codec (the type's
//   BM_Wire_DecodeJson      to_json formatter) / DecodeMessage of that frame (nlohmann parse plus
//                           the codec's parser), for a small device-state payload.
//   BM_Wire_EncodeBinary    The same message type through a hand-written binary codec, so the
//   BM_Wire_DecodeBinary    pair reads as the cost of JSON against the frame's own floor.
//   BM_Bridge_Throughput    Two bridges (nodes A and B, a connection each): each iteration
//                           publishes kBatch messages with a 128-byte binary payload on A's
//                           bridged topic, flushes (Bridge::Flush, as the raw row flushes) and
//                           waits until B's topic has delivered all of them.
//                           Read against BM_RawNats_PubSub. coalesce:1 is the default (frames
//                           coalesced into batch containers; counter frames_per_msg: frames per
//                           NATS message), coalesce:0 sends a NATS message per frame.
//   BM_Bridge_Latency       One message per iteration from A's topic to B's; p50_us and p99_us
//                           counters. send_asap:0 is the default batching connection (libnats'
//                           flusher waits about 1 ms for more; the bridge's coalescing delay,
//                           BridgeOptions::batch_delay, comes before it); send_asap:1 writes at
//                           once (no coalescing).
//   BM_Bridge_Resync/N      Node A holds N snapshots in its bridged cache; each iteration a node C
//                           connects and waits until its cache holds all N of A's (the resync).

#include <benchmark/benchmark.h>
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/nats_test_server.h"
#include "plexus/bus/cache.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/json.h"
#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"
#include "plexus/cluster/bridge.h"
#include "plexus/cluster/codec.h"

namespace {

using plexus::cluster::testing::NatsServer;

// The process's server, started at first use; null (and the row skipped) without nats-server.
NatsServer* Server() {
  static std::unique_ptr<NatsServer> server = NatsServer::Start({});
  return server.get();
}

// One libnats connection with the given SendAsap setting, destroyed with the scope.
class Connection {
 public:
  Connection(const std::string& url, bool send_asap) {
    natsOptions* options = nullptr;
    if (natsOptions_Create(&options) != NATS_OK) return;
    natsOptions_SetURL(options, url.c_str());
    natsOptions_SetSendAsap(options, send_asap);
    if (natsConnection_Connect(&nc_, options) != NATS_OK) nc_ = nullptr;
    natsOptions_Destroy(options);
  }
  ~Connection() { natsConnection_Destroy(nc_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  natsConnection* get() const { return nc_; }

 private:
  natsConnection* nc_ = nullptr;
};

void OnCount(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  static_cast<std::atomic<std::int64_t>*>(closure)->fetch_add(1, std::memory_order_release);
  natsMsg_Destroy(msg);
}

void OnEcho(natsConnection* nc, natsSubscription*, natsMsg* msg, void*) {
  natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg),
                         natsMsg_GetDataLength(msg));
  natsMsg_Destroy(msg);
}

// Waits (bounded) until `counter` reaches `target`; false on timeout.
bool AwaitCount(const std::atomic<std::int64_t>& counter, std::int64_t target) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (counter.load(std::memory_order_acquire) < target) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

void BM_RawNats_PubSub(benchmark::State& state) {
  constexpr int kBatch = 1000;
  NatsServer* server = Server();
  if (server == nullptr) return state.SkipWithError("nats-server could not be started");
  Connection publisher(server->Url(), false);
  Connection subscriber(server->Url(), false);
  if (!publisher.get() || !subscriber.get()) return state.SkipWithError("connect failed");
  std::atomic<std::int64_t> received{0};
  natsSubscription* sub = nullptr;
  natsConnection_Subscribe(&sub, subscriber.get(), "bench.pubsub", OnCount, &received);
  natsSubscription_SetPendingLimits(sub, -1, -1);
  natsConnection_FlushTimeout(subscriber.get(), 10000);
  const std::string payload(128, 'x');
  std::int64_t sent = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      natsConnection_Publish(publisher.get(), "bench.pubsub", payload.data(),
                             static_cast<int>(payload.size()));
    }
    natsConnection_Flush(publisher.get());
    sent += kBatch;
    if (!AwaitCount(received, sent)) {
      state.SkipWithError("messages lost");
      break;
    }
  }
  state.SetItemsProcessed(sent);
  state.SetBytesProcessed(sent * static_cast<std::int64_t>(payload.size()));
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
}
BENCHMARK(BM_RawNats_PubSub)->UseRealTime();

void BM_RawNats_RequestReply(benchmark::State& state) {
  NatsServer* server = Server();
  if (server == nullptr) return state.SkipWithError("nats-server could not be started");
  Connection requester(server->Url(), true);
  Connection responder(server->Url(), true);
  if (!requester.get() || !responder.get()) return state.SkipWithError("connect failed");
  natsSubscription* sub = nullptr;
  natsConnection_Subscribe(&sub, responder.get(), "bench.request", OnEcho, nullptr);
  natsConnection_FlushTimeout(responder.get(), 10000);
  const std::string payload(128, 'r');
  std::vector<double> micros;
  micros.reserve(1 << 16);
  for (auto _ : state) {
    natsMsg* reply = nullptr;
    const auto start = std::chrono::steady_clock::now();
    const natsStatus s =
        natsConnection_Request(&reply, requester.get(), "bench.request", payload.data(),
                               static_cast<int>(payload.size()), 5000);
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
    if (s != NATS_OK) {
      state.SkipWithError(natsStatus_GetText(s));
      break;
    }
    natsMsg_Destroy(reply);
  }
  if (!micros.empty()) {
    std::sort(micros.begin(), micros.end());
    state.counters["p50_us"] = micros[micros.size() / 2];
    state.counters["p99_us"] = micros[std::min(micros.size() - 1, micros.size() * 99 / 100)];
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
}
BENCHMARK(BM_RawNats_RequestReply)->UseRealTime();

// The wire rows' message: a device state as the cache bridges it.
struct DeviceState {
  std::string device;
  int state = 0;
};

struct WireFixture {
  plexus::TypedMessageType<DeviceState> type;
  plexus::cluster::CodecRegistry json;
  plexus::cluster::CodecRegistry binary;
};

const WireFixture& Wire() {
  static const WireFixture* fixture = [] {
    auto* f = new WireFixture();
    f->type = plexus::TypedMessageType<DeviceState>::Create(
        "Bench.DeviceState",
        {.to_json = plexus::JsonFormatter<DeviceState>([](const DeviceState& d) {
           return nlohmann::json{{"device", d.device}, {"state", d.state}};
         })});
    f->json.Add(plexus::cluster::JsonCodec(
        f->type, [](const nlohmann::json& j) -> std::optional<DeviceState> {
          return DeviceState{j.at("device").get<std::string>(), j.at("state").get<int>()};
        }));
    f->binary.Add(plexus::cluster::BinaryCodec(
        f->type,
        [](const DeviceState& d, std::string& out) {
          const auto state = static_cast<std::uint32_t>(d.state);
          for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(state >> (8 * i)));
          out.append(d.device);
        },
        [](std::string_view in) -> std::optional<DeviceState> {
          if (in.size() < 4) return std::nullopt;
          std::uint32_t state = 0;
          for (int i = 0; i < 4; ++i) {
            state |= std::uint32_t{static_cast<std::uint8_t>(in[i])} << (8 * i);
          }
          return DeviceState{std::string(in.substr(4)), static_cast<int>(state)};
        }));
    return f;
  }();
  return *fixture;
}

const plexus::NodeId kSender(plexus::NodeId::Bytes{0x02, 0, 0, 0, 0, 0xa});
const plexus::NodeId kReceiver(plexus::NodeId::Bytes{0x02, 0, 0, 0, 0, 0xb});

void EncodeRow(benchmark::State& state, const plexus::cluster::CodecRegistry& codecs) {
  const plexus::Ref<plexus::Message> message =
      plexus::Message::Create(Wire().type.get(), DeviceState{"PJSIP/alice-00000001", 2}, kSender);
  std::string out;
  std::uint64_t seq = 0;
  for (auto _ : state) {
    out.clear();
    if (!plexus::cluster::EncodeMessage(codecs, *message, "PJSIP/alice", ++seq, out)) {
      return state.SkipWithError("encode refused");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["frame_bytes"] = static_cast<double>(out.size());
  state.SetItemsProcessed(state.iterations());
}

void DecodeRow(benchmark::State& state, const plexus::cluster::CodecRegistry& codecs) {
  const plexus::Ref<plexus::Message> message =
      plexus::Message::Create(Wire().type.get(), DeviceState{"PJSIP/alice-00000001", 2}, kSender);
  std::string frame;
  plexus::cluster::EncodeMessage(codecs, *message, "PJSIP/alice", 1, frame);
  const plexus::cluster::WireLimits limits;
  for (auto _ : state) {
    plexus::cluster::DecodedMessage decoded =
        plexus::cluster::DecodeMessage(codecs, frame, limits, kReceiver);
    if (!decoded.message) return state.SkipWithError("decode refused");
    benchmark::DoNotOptimize(decoded.message.get());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Wire_EncodeJson(benchmark::State& state) {
  EncodeRow(state, Wire().json);
}
void BM_Wire_DecodeJson(benchmark::State& state) {
  DecodeRow(state, Wire().json);
}
void BM_Wire_EncodeBinary(benchmark::State& state) {
  EncodeRow(state, Wire().binary);
}
void BM_Wire_DecodeBinary(benchmark::State& state) {
  DecodeRow(state, Wire().binary);
}
BENCHMARK(BM_Wire_EncodeJson);
BENCHMARK(BM_Wire_DecodeJson);
BENCHMARK(BM_Wire_EncodeBinary);
BENCHMARK(BM_Wire_DecodeBinary);

// --- The bridge -------------------------------------------------------------------------------

// One bridged node: a topic, optionally a cache of it, a bridge, and a count of the messages of
// other nodes its topic delivered.
struct BenchNode {
  plexus::NodeId id;
  plexus::Ref<plexus::Topic> topic = plexus::Topic::Create("bench-devices");
  plexus::Ref<plexus::Cache> cache;
  plexus::Ref<plexus::CachingTopic> caching;
  std::atomic<std::int64_t> foreign{0};
  plexus::Subscription counter;
  std::unique_ptr<plexus::cluster::Bridge> bridge;

  BenchNode(const plexus::NodeId& node, bool cached) : id(node) {
    if (cached) {
      cache = plexus::Cache::Create(
          [](const plexus::Message& m) -> std::string {
            const DeviceState* d = Wire().type.Get(m);
            return d != nullptr ? d->device : std::string();
          },
          nullptr, nullptr, id);
      caching = plexus::CachingTopic::Create(topic, cache);
    }
    plexus::SubscriptionOptions o;
    o.mode = plexus::DeliveryMode::kSynchronous;
    counter = plexus::Subscription::Create(
        topic,
        [this](const plexus::Message& m, bool) {
          if (!(m.Node() == id) && Wire().type.Get(m) != nullptr) {
            foreign.fetch_add(1, std::memory_order_release);
          }
        },
        o);
  }
  bool Connect(bool send_asap = false, bool coalesce = true) {
    plexus::cluster::BridgeOptions o;
    o.send_asap = send_asap;
    if (!coalesce) o.batch_delay = std::chrono::microseconds(0);
    o.servers = {Server()->Url()};
    o.cluster = "bench";
    o.node = id;
    o.heartbeat_interval = std::chrono::milliseconds(50);
    o.heartbeat_miss_limit = 100;
    o.codecs = Wire().binary;
    bridge = plexus::cluster::Bridge::Create(std::move(o));
    return bridge != nullptr && bridge->AddTopic(topic, {.caching = caching});
  }
  ~BenchNode() {
    bridge.reset();
    counter.UnsubscribeAndJoin();
    if (caching != nullptr) caching->UnsubscribeAndJoin();
  }
};

// A 128-byte payload through the binary codec (4 bytes of state, 124 of device name).
plexus::Ref<plexus::Message> BenchMessage(const plexus::NodeId& node, int i) {
  std::string device(124, 'd');
  const std::string n = std::to_string(i);
  device.replace(0, n.size(), n);
  return plexus::Message::Create(Wire().type.get(), DeviceState{std::move(device), i}, node);
}

bool Meshed(BenchNode& a, BenchNode& b) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (a.bridge->Nodes().size() != 1 || b.bridge->Nodes().size() != 1) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void BM_Bridge_Throughput(benchmark::State& state) {
  constexpr int kBatch = 1000;
  if (Server() == nullptr) return state.SkipWithError("nats-server could not be started");
  BenchNode a(kSender, false);
  BenchNode b(kReceiver, false);
  const bool coalesce = state.range(0) != 0;
  if (!a.Connect(false, coalesce) || !b.Connect(false, coalesce) || !Meshed(a, b)) {
    return state.SkipWithError("no bridge");
  }
  std::vector<plexus::Ref<plexus::Message>> batch;
  for (int i = 0; i < kBatch; ++i) batch.push_back(BenchMessage(kSender, i));
  std::int64_t sent = 0;
  for (auto _ : state) {
    for (const auto& m : batch) a.topic->Publish(m);
    a.bridge->Flush();  // as the raw row flushes its batch
    sent += kBatch;
    if (!AwaitCount(b.foreign, sent)) {
      state.SkipWithError("messages lost");
      break;
    }
  }
  state.SetItemsProcessed(sent);
  state.SetBytesProcessed(sent * 128);
  const plexus::cluster::BridgeTopicStats out = a.bridge->Stats().topics.at(0);
  if (out.batches_out > 0) {
    state.counters["frames_per_msg"] =
        static_cast<double>(out.messages_out) / static_cast<double>(out.batches_out);
  }
}
BENCHMARK(BM_Bridge_Throughput)->ArgName("coalesce")->Arg(0)->Arg(1)->UseRealTime();

void BM_Bridge_Latency(benchmark::State& state) {
  if (Server() == nullptr) return state.SkipWithError("nats-server could not be started");
  BenchNode a(kSender, false);
  BenchNode b(kReceiver, false);
  if (!a.Connect(/*send_asap=*/state.range(0) != 0) || !b.Connect() || !Meshed(a, b)) {
    return state.SkipWithError("no bridge");
  }
  const plexus::Ref<plexus::Message> message = BenchMessage(kSender, 1);
  std::vector<double> micros;
  micros.reserve(1 << 16);
  std::int64_t sent = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    a.topic->Publish(message);
    if (!AwaitCount(b.foreign, ++sent)) {
      state.SkipWithError("message lost");
      break;
    }
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  if (!micros.empty()) {
    std::sort(micros.begin(), micros.end());
    state.counters["p50_us"] = micros[micros.size() / 2];
    state.counters["p99_us"] = micros[std::min(micros.size() - 1, micros.size() * 99 / 100)];
  }
}
BENCHMARK(BM_Bridge_Latency)->ArgName("send_asap")->Arg(0)->Arg(1)->UseRealTime();

void BM_Bridge_Resync(benchmark::State& state) {
  if (Server() == nullptr) return state.SkipWithError("nats-server could not be started");
  const auto n = static_cast<std::size_t>(state.range(0));
  BenchNode a(kSender, true);
  for (std::size_t i = 0; i < n; ++i) a.topic->Publish(BenchMessage(kSender, static_cast<int>(i)));
  if (!a.Connect()) return state.SkipWithError("no bridge");
  const plexus::NodeId joiner(plexus::NodeId::Bytes{0x02, 0, 0, 0, 0, 0xc});
  for (auto _ : state) {
    BenchNode c(joiner, true);
    if (!c.Connect()) return state.SkipWithError("no bridge");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (c.cache->Size() < n) {
      if (std::chrono::steady_clock::now() > deadline) return state.SkipWithError("no resync");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    state.PauseTiming();  // the joiner's stop is not the resync
    c.bridge->Stop();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_Bridge_Resync)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

}  // namespace
