// -----------------------------------------------------------------------------
// plexus/cluster/bridge.h
// -----------------------------------------------------------------------------
//
// Bridge carries bus topics between nodes over NATS, as Asterisk's res_corosync carries Stasis
// topics over corosync: every node runs one bridge per cluster, and a topic bridged on several
// nodes behaves as one topic spanning them.
//
//   plexus::cluster::BridgeOptions options;
//   options.servers = {"nats://127.0.0.1:4222"};
//   options.cluster = "pbx";
//   options.codecs = codecs;  // what may cross (codec.h)
//   std::unique_ptr<plexus::cluster::Bridge> bridge = plexus::cluster::Bridge::Create(options);
//   bridge->AddTopic(devices, {.caching = devices_caching});
//
// What crosses, and how:
//
//   * Out: a message published on a bridged topic, made by this bridge's node
//     (Message::Node() == BridgeOptions::node) and of a type with a codec, is encoded
//     (EncodeMessage) and published on the topic's subject "plexus.<cluster>.topic.<name>",
//     coalesced with the topic's other frames of the moment into one batch container unless
//     coalescing is off (BridgeOptions::batch_delay). Messages of other nodes are never sent again,
//     so nothing loops; the connection also asks the server not to echo its own messages back.
//   * In: a frame on a bridged subject is decoded (DecodeMessage, which refuses frames that
//     claim this node's id) and published on the local topic with its origin node's id. A frame
//     that is refused is counted per RejectReason and logged at most once per reason per
//     BridgeOptions::reject_log_interval; the frames after it are handled as usual. A batch
//     container is checked whole first (a malformed one is refused as a whole, once, and none
//     of its frames is delivered), then its frames are handled one by one as above.
//   * Caches: a bridged topic may name its CachingTopic; the foreign snapshots that come in land
//     in the foreign slots of its cache because they carry their node id.
//   * Membership: every node publishes a heartbeat on "plexus.<cluster>._node.hb" every
//     heartbeat_interval. A node unseen for heartbeat_miss_limit of its intervals, or one that
//     says goodbye (a bridge that stops sends "bye"), is gone: its snapshots are removed from
//     every bridged cache, through the caching topic, so clear updates are published and the
//     aggregates recompute (CachingTopic::RemoveNode). A node seen for the first time, or with a
//     new incarnation (it restarted), is resynced: this bridge asks it for its local snapshots
//     of every bridged cache (a request on "plexus.<cluster>._node.<node>.dump", answered in
//     chunks) and publishes them locally. After a reconnection of its own, a bridge resyncs
//     with every node it knows.
//   * Services: Serve answers requests on "plexus.<cluster>.svc.<service>.<node>"; Request asks
//     one node and says whether it answered, timed out, or nobody was there.
//
// Delivery is NATS core's: at most once. Messages published while disconnected are buffered
// up to reconnect_buffer_bytes and sent after the reconnection (0: they are lost, counted in
// Stats().send_failures); the resync after the reconnection repairs the caches.
//
// Two connections per bridge: one for topic traffic (libnats batches its writes) and one,
// sending at once, for heartbeats, resync and services (their latency matters more than their
// throughput).
//
// Lifecycle: Create connects (or returns null, logging why). Stop, which the destructor calls:
// the bridge's bus subscriptions are unsubscribed and joined (each gets its final message, and
// what was published on a bridged topic before Stop is handed to NATS), the membership thread
// is joined, "bye" is sent, the inbound NATS subscriptions are drained (what was received is
// delivered), the outbound data is flushed, and the connections are closed; once libnats has
// run each subscription's completion and each connection's closed callback, they are destroyed.
// Nothing of the bridge runs after Stop returns. libnats' own process-wide threads end only with
// nats_CloseAndWait, which belongs at process end (after every bridge has stopped).
//
// Thread safety: thread-safe. Every member function may be called from any thread, except Stop
// (and the destructor) from a callback the bridge runs (an alert callback, a service handler,
// or a bus callback on a bridged topic): that is misuse, reported, and Stop returns without
// stopping. Callbacks (alerts, service handlers) run on libnats' threads or the bridge's
// membership thread, under no lock of the bridge's.
//
// Misuse (reported through plexus::ReportMisuse with the caller's location): a null topic, a
// topic bridged twice, two topics on one subject, AddTopic or Serve after Stop, an empty
// service name or handler, a service served twice, a Request to NodeId::None().

#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/bus/cache.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/node_id.h"
#include "plexus/bus/topic.h"
#include "plexus/cluster/codec.h"
#include "plexus/cluster/wire.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"

namespace plexus::cluster {

// What a bridge tells its alert callback.
struct BridgeAlert {
  enum class Kind {
    kSlowConsumer,  // a subscription could not keep up: NATS dropped messages for it
    kDisconnected,  // the connection to the server was lost (libnats reconnects)
    kReconnected,   // the connection is back (a resync follows)
    kNodeJoined,    // a node (or a new incarnation of one) was seen
    kNodeLeft,      // a node said goodbye or missed its heartbeats; its snapshots are cleared
  };
  Kind kind = Kind::kSlowConsumer;
  std::string subject;       // kSlowConsumer: the subject of the subscription
  std::int64_t dropped = 0;  // kSlowConsumer: messages dropped on it so far
  NodeId node;               // kNodeJoined, kNodeLeft
};

struct BridgeOptions {
  // NATS servers, tried in this order (no randomisation), e.g. "nats://127.0.0.1:4222".
  std::vector<std::string> servers;
  // The cluster's name: the subjects are "plexus.<cluster>.…". Letters, digits, '-' and '_'.
  std::string cluster = "plexus";
  // This bridge's node: the node id of the messages it sends, and the one it refuses to
  // receive. Several bridges with different node ids may run in one process.
  NodeId node = NodeId::Local();
  // This run of the node; 0: chosen at Create (the wall clock), so a restart is a new one.
  std::uint64_t incarnation = 0;

  std::chrono::milliseconds heartbeat_interval{1000};
  int heartbeat_miss_limit = 3;  // intervals without a heartbeat before a node is gone

  std::chrono::milliseconds reconnect_wait{250};
  int max_reconnects = -1;  // -1: forever
  // Bytes of outbound data kept while disconnected; 0: none (publishes while disconnected
  // fail and are counted as lost).
  int reconnect_buffer_bytes = 8 << 20;
  std::chrono::milliseconds connect_timeout{2000};
  // Resync requests (and Request's default).
  std::chrono::milliseconds request_timeout{2000};
  // Topic traffic written at once rather than batched by libnats' flusher (which waits about a
  // millisecond for more): lower latency, lower throughput. Control traffic is always at once.
  bool send_asap = false;
  // Coalescing of topic traffic (off with send_asap or a zero batch_delay): the frames a
  // bridged topic sends go out together, as one NATS message (a batch container, wire.h), so
  // NATS' per-message costs are paid once per batch. A batch is sent by the publisher whose
  // frame would take it past batch_max_bytes (or WireLimits::max_batch_frames), otherwise by
  // the bridge's flusher batch_delay after its first frame; Flush and Stop send it at once.
  // What it costs: up to batch_delay more latency, and under NATS' at-most-once delivery a
  // lost NATS message loses the whole batch. Peers must be able to decode containers (a
  // bridge older than them refuses them as unsupported_version): turn it off to talk to those.
  std::chrono::microseconds batch_delay{100};
  // Bytes of a batch container, at most (below the server's max_payload, and within the
  // peers' WireLimits::max_batch_bytes); a frame too big for a batch goes by itself.
  std::size_t batch_max_bytes = 16 << 10;

  // Per inbound subscription, what NATS queues before it drops (slow consumer).
  int pending_msgs_limit = 65536;
  int pending_bytes_limit = 64 << 20;

  WireLimits limits;
  CodecRegistry codecs;

  // At most one log line per reject reason per interval.
  std::chrono::milliseconds reject_log_interval{10000};
  // Resync replies are cut into chunks of about this many bytes.
  std::size_t dump_chunk_bytes = 256 << 10;

  // Called (on a libnats or bridge thread, under no bridge lock) for every alert. It must not
  // call Stop.
  std::function<void(const BridgeAlert&)> on_alert;
};

// How one topic is bridged.
struct BridgeTopicOptions {
  // The caching topic that keeps the topic's cache: its cache answers resync requests, and a
  // node that leaves is removed through it (publishing clear updates). Its original topic must
  // be the bridged topic.
  Ref<CachingTopic> caching;
  // The subject's last part; empty: the topic's name (characters NATS does not allow in a
  // subject token become '_').
  std::string subject;
};

struct BridgeTopicStats {
  std::string topic;
  std::string subject;
  std::uint64_t messages_out = 0;        // frames published (handed to libnats)
  std::uint64_t batches_out = 0;         // NATS messages that carried them (batches, lone frames)
  std::uint64_t messages_in = 0;         // frames accepted and published locally
  std::uint64_t encode_failures = 0;     // messages whose codec refused them
  std::uint64_t send_failures = 0;       // frames libnats refused (disconnected, no buffer;
                                         // every frame of a refused batch)
  std::uint64_t stale = 0;               // frames older than a dump already installed
  std::uint64_t held_during_resync = 0;  // frames that waited for their node's dump
  std::int64_t nats_dropped = 0;         // messages NATS dropped for this subscription
  std::int64_t nats_pending = 0;         // messages waiting in this subscription
};

struct BridgeStats {
  NodeId node;
  std::uint64_t incarnation = 0;
  std::vector<BridgeTopicStats> topics;
  std::array<std::uint64_t, static_cast<std::size_t>(RejectReason::kCount)> rejects{};
  std::uint64_t rejects_total = 0;
  std::uint64_t slow_consumer_events = 0;
  std::uint64_t reconnects = 0;
  std::uint64_t disconnects = 0;
  bool disconnected = false;  // now
  std::vector<NodeId> nodes;  // other nodes alive now
  std::uint64_t nodes_joined = 0;
  std::uint64_t nodes_left = 0;
  std::uint64_t resyncs = 0;          // dumps received and installed
  std::uint64_t resync_failures = 0;  // dump requests that failed (timeout, no responder)
  // Resyncs asked for and not finished yet, failed ones waiting for their retry included (0:
  // this node's caches hold what every known node had when it last asked).
  std::uint64_t resyncs_pending = 0;
  std::uint64_t snapshots_resynced = 0;
  std::uint64_t dumps_served = 0;
  std::uint64_t requests_served = 0;  // service requests answered
  // One record per node in `nodes`, in the same order (for an operator's view of the peers).
  struct Peer {
    NodeId node;
    std::uint64_t incarnation = 0;
    std::chrono::milliseconds since_heartbeat{0};     // how long ago its last heartbeat came
    std::chrono::milliseconds heartbeat_interval{0};  // the interval it announces
    std::uint64_t messages_in = 0;  // its frames accepted (all bridged topics, since Create)
  };
  std::vector<Peer> peers;
};

// What Request gave.
struct RequestResult {
  enum class Status { kOk, kTimeout, kNoResponders, kError };
  Status status = Status::kError;
  std::string payload;  // kOk: the reply
  std::string error;    // kError: why

  bool ok() const noexcept { return status == Status::kOk; }
};

std::string_view RequestStatusName(RequestResult::Status status) noexcept;

namespace cluster_internal {
class BridgeCore;
}  // namespace cluster_internal

class Bridge {
 public:
  // Answers one request: the reply's payload.
  using ServiceHandler = std::function<std::string(std::string_view request)>;

  // Connects to the servers and starts the membership thread. Null (after a log line saying
  // why) when no server could be reached within connect_timeout. Options without servers, or
  // with node NodeId::None(), are misuse (reported; null).
  static std::unique_ptr<Bridge> Create(BridgeOptions options,
                                        SourceLocation where = SourceLocation::current());
  ~Bridge();  // Stop()s
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Bridges `topic`: from now on its local messages go out and its subject's frames come in.
  // False after misuse (reported).
  bool AddTopic(const Ref<Topic>& topic, BridgeTopicOptions options = {},
                SourceLocation where = SourceLocation::current());

  // Answers requests for `service` addressed to this node with `handler` (run on a libnats
  // thread; an exception is logged and answered with an empty payload). False after misuse.
  bool Serve(std::string_view service, ServiceHandler handler,
             SourceLocation where = SourceLocation::current());
  // Asks `node` for `service`, waiting at most `timeout` (negative: request_timeout).
  RequestResult Request(const NodeId& node, std::string_view service, std::string_view payload,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(-1),
                        SourceLocation where = SourceLocation::current());

  // Waits until the topic traffic handed to NATS so far has reached the server (at most
  // `timeout`); false on timeout or when stopped.
  bool Flush(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Stops the bridge (see the file comment). Idempotent.
  void Stop(SourceLocation where = SourceLocation::current());

  const NodeId& Node() const noexcept;
  std::uint64_t Incarnation() const noexcept;
  // The subject of a topic bridged as `name` (after the character replacement).
  std::string SubjectFor(std::string_view name) const;
  // The other nodes alive now.
  std::vector<NodeId> Nodes() const;
  BridgeStats Stats() const;

  // For tests of failure: stops the heartbeats and closes the connections without "bye", as if
  // the process had died (the peers notice by the missed heartbeats). The bridge is stopped
  // afterwards.
  void Crash();

 private:
  explicit Bridge(std::unique_ptr<cluster_internal::BridgeCore> core);
  std::unique_ptr<cluster_internal::BridgeCore> core_;
};

}  // namespace plexus::cluster
