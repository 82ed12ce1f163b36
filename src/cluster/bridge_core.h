// The bridge's state, shared by its parts: bridge.cc (connections, topics in, services, stop),
// bridge_send.cc (topics out: coalescing into batches, the flusher) and bridge_membership.cc
// (heartbeats, node expiry, resync and dumps).
//
// Thread safety: mu_ guards the tables; each TopicLink's send_mu its batch; flush_mu_ the
// flusher's queue (no two of these are held at once); counters are atomics. libnats runs the
// message callbacks on its delivery threads with a closure pointing at a TopicLink, a ServiceLink
// or the core: each lives until Stop has waited for its subscription's completion callback.

#pragma once

#include <nats/nats.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "dump_fence.h"
#include "node_table.h"
#include "plexus/bus/subscription.h"
#include "plexus/cluster/bridge.h"
#include "plexus/sync/cond_var.h"
#include "plexus/sync/mutex.h"
#include "resync_gate.h"

namespace plexus::cluster::cluster_internal {

class BridgeCore;

// One bridged topic.
struct TopicLink {
  BridgeCore* core = nullptr;
  Ref<Topic> topic;
  Ref<CachingTopic> caching;
  std::string key;      // the subject's last token
  std::string subject;  // plexus.<cluster>.topic.<key>
  Subscription out;     // the bus side: local messages to send
  natsSubscription* in = nullptr;
  std::atomic<std::uint64_t> messages_out{0};
  std::atomic<std::uint64_t> batches_out{0};
  std::atomic<std::uint64_t> messages_in{0};
  std::atomic<std::uint64_t> encode_failures{0};
  std::atomic<std::uint64_t> send_failures{0};
  std::atomic<std::uint64_t> stale{0};

  // The frames waiting to go out together (coalescing on): a batch container (wire.h), empty
  // when none waits. send_mu is held while a batch is handed to libnats too, so the link's
  // frames reach libnats in the order they were appended; it never covers user code (the
  // codec runs before it is taken).
  Mutex send_mu;
  std::string batch PLEXUS_GUARDED_BY(send_mu);
  bool batch_queued PLEXUS_GUARDED_BY(send_mu) = false;  // on the flusher's queue

  // Per node (by NodeKey), the sequence number its last dump of this topic was taken at: a live
  // frame of that node numbered below it is already reflected in the dump (or superseded), so it
  // is dropped rather than delivered twice. 0 (none) when the node is gone. Written by the
  // membership thread before a resync's gate opens; read once per frame, so without a lock.
  NodeTable watermarks;
  std::atomic<bool> has_watermarks{false};

  // Per node, the watermark of its last dump while the node's first frame numbered at or above
  // it is still to come (0: none due): that one frame may be in the dump as well (dump_fence.h),
  // so it is compared with what the dump installed. checks_due counts the nodes with one due,
  // so the receive path looks at the table only then. Written by whichever thread delivers the
  // node's frames (the gate hands that role over), so without a lock.
  NodeTable check_first_at;
  std::atomic<std::uint32_t> checks_due{0};

  // The sending side: keeps the topic's sends out of the moment a dump of its cache is taken.
  DumpFence dump_fence;

  // Holds the live frames of the node being resynced until its dump is installed, so the two
  // reach the local topic in one order (resync_gate.h): the receive path on libnats' delivery
  // thread, the resync on the membership thread.
  ResyncGate<Ref<Message>> gate;
};

// A node id as a map key.
std::uint64_t NodeKey(const NodeId& node);

// One served service.
struct ServiceLink {
  BridgeCore* core = nullptr;
  std::string name;
  std::string subject;
  Bridge::ServiceHandler handler;
  natsSubscription* sub = nullptr;
};

// What a node's heartbeat says.
struct Heartbeat {
  enum Kind : std::uint8_t { kBeat = 0, kBye = 1 };
  Kind kind = kBeat;
  NodeId node;
  std::uint64_t incarnation = 0;
  std::uint32_t interval_ms = 0;
};
std::string EncodeHeartbeat(const Heartbeat& hb);
bool DecodeHeartbeat(std::string_view bytes, Heartbeat& hb);

// "0a1b2c3d4e5f": a node id as one subject token.
std::string NodeToken(const NodeId& node);
// A topic name made a valid subject token.
std::string SubjectToken(std::string_view name);

// Marks the current thread as running a callback of the bridge (Stop from there is misuse).
class InCallback {
 public:
  InCallback() noexcept;
  ~InCallback();
  InCallback(const InCallback&) = delete;
  InCallback& operator=(const InCallback&) = delete;
  static bool Active() noexcept;
};

class BridgeCore {
 public:
  explicit BridgeCore(BridgeOptions options);
  ~BridgeCore();

  // Connects both connections and subscribes the membership subjects; false (logged) if not.
  bool Start();
  bool AddTopic(const Ref<Topic>& topic, BridgeTopicOptions options, SourceLocation where);
  bool Serve(std::string_view service, Bridge::ServiceHandler handler, SourceLocation where);
  RequestResult Request(const NodeId& node, std::string_view service, std::string_view payload,
                        std::chrono::milliseconds timeout, SourceLocation where);
  void Stop(bool orderly, SourceLocation where);
  bool Flush(std::chrono::milliseconds timeout);

  const BridgeOptions& options() const noexcept { return options_; }
  std::string SubjectFor(std::string_view name) const;
  std::vector<NodeId> Nodes() const;
  BridgeStats Stats() const;

 private:
  // What a connection's callbacks are given: they run on libnats' callback thread, which must
  // not read data_ or ctl_ (Start and Stop write them).
  struct ConnectionRole {
    BridgeCore* core;
    bool data;
  };

  struct Peer {
    NodeId node;
    std::uint64_t incarnation = 0;
    std::chrono::steady_clock::time_point last_seen;
    std::chrono::milliseconds interval{0};
  };

  // --- bridge.cc -------------------------------------------------------------------------
  natsConnection* Connect(bool send_asap, ConnectionRole* role);
  void Receive(TopicLink& link, std::string_view bytes);
  // Publishes a frame of `node` on the local topic unless a dump already reflects it (stale).
  void Deliver(TopicLink& link, std::uint64_t node, std::uint64_t seq, const Ref<Message>& message);
  // Whether the frame (seq, message) of `node` is the one a dump may hold as well (the node's
  // first at or above the dump's watermark) and the cache holds it unchanged from that dump.
  bool InLastDump(TopicLink& link, std::uint64_t node, std::uint64_t seq, const Message& message);
  void CountReject(RejectReason reason, const std::string& subject);
  void Alert(const BridgeAlert& alert);
  // Waits until `n` more subscriptions have completed (bounded), then forgets them.
  void WaitForCompletions(int n);
  static void OnTopicMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);
  static void OnServiceRequest(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);
  static void OnComplete(void* closure);
  static void OnError(natsConnection*, natsSubscription* sub, natsStatus err, void* closure);
  static void OnDisconnected(natsConnection* nc, void* closure);
  static void OnReconnected(natsConnection* nc, void* closure);
  static void OnClosed(natsConnection* nc, void* closure);

  // --- bridge_send.cc --------------------------------------------------------------------
  // Encodes a local message and sends it, at once or in the link's batch.
  void SendLocal(TopicLink& link, const Message& message);
  // Hands `frames` frames (a batch container, or one frame by itself) to libnats and counts
  // them.
  void PublishFrames(TopicLink& link, std::string_view bytes, std::size_t frames);
  // Sends the link's batch, if any (a batch of one as the lone frame).
  void SendBatch(TopicLink& link) PLEXUS_REQUIRES(link.send_mu);
  // Sends every link's batch now (Flush, Stop).
  void SendAllBatches() PLEXUS_EXCLUDES(mu_);
  void FlusherLoop();
  void StopFlusher();

  // --- bridge_membership.cc --------------------------------------------------------------
  void MembershipLoop();
  void SendHeartbeat(Heartbeat::Kind kind);
  void OnHeartbeatBytes(std::string_view bytes);
  void NodeGone(const NodeId& node);
  void ResyncWith(const NodeId& node);
  bool ResyncTopic(const NodeId& node, TopicLink& link);
  // Releases what `link`'s gate held during a resync of `node`, in arrival order, and opens it.
  void ReleaseHeld(const NodeId& node, TopicLink& link);
  // A snapshot a dump brought, kept until the whole dump is in.
  struct DumpedSnapshot {
    std::string type_name;
    std::string id;
    std::string payload;
    Ref<Message> message;
  };
  // Fetches `node`'s dump of `link`'s cache and installs it; false (logged) if it did not come
  // whole (then nothing is installed).
  bool InstallDump(const NodeId& node, TopicLink& link);
  // Whether `link`'s cache holds the snapshot `d` of `node` brings, unchanged.
  bool AlreadyCached(const TopicLink& link, const NodeId& node, const DumpedSnapshot& d) const;
  void AnswerDump(natsMsg* request);
  static void OnHeartbeat(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);
  static void OnDumpRequest(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);

  const BridgeOptions options_;
  const std::string prefix_;      // plexus.<cluster>.
  const std::string node_token_;  // NodeToken(options_.node)
  // Coalescing: whether it is on, and a batch's bounds.
  const bool coalesce_;
  const std::size_t batch_max_bytes_;
  const std::size_t batch_max_frames_;

  ConnectionRole data_role_{this, true};
  ConnectionRole ctl_role_{this, false};
  natsConnection* data_ = nullptr;  // topic traffic (batched writes)
  natsConnection* ctl_ = nullptr;   // heartbeats, resync, services (sent at once)
  natsSubscription* hb_sub_ = nullptr;
  natsSubscription* dump_sub_ = nullptr;

  mutable Mutex mu_;
  CondVar cv_;
  bool stopping_ PLEXUS_GUARDED_BY(mu_) = false;
  bool stopped_ PLEXUS_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<TopicLink>> topics_ PLEXUS_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<ServiceLink>> services_ PLEXUS_GUARDED_BY(mu_);
  std::map<std::string, Peer> peers_ PLEXUS_GUARDED_BY(mu_);  // by NodeToken
  std::vector<NodeId> to_resync_ PLEXUS_GUARDED_BY(mu_);
  std::vector<NodeId> to_remove_ PLEXUS_GUARDED_BY(mu_);
  std::vector<NodeId> retry_ PLEXUS_GUARDED_BY(mu_);        // resyncs that failed
  std::size_t resyncs_running_ PLEXUS_GUARDED_BY(mu_) = 0;  // taken from to_resync_, not done
  bool beat_now_ PLEXUS_GUARDED_BY(mu_) = false;
  int completions_ PLEXUS_GUARDED_BY(mu_) = 0;  // subscriptions completed, not yet waited for
  int connections_ PLEXUS_GUARDED_BY(mu_) = 0;  // made
  int closed_ PLEXUS_GUARDED_BY(mu_) = 0;       // whose closed callback ran (their last)
  std::thread membership_;

  // Coalescing: the flusher, which sends a batch batch_delay after its
  // first frame unless it filled up first (then the publisher that filled it sent it).
  struct Due {
    TopicLink* link;
    std::chrono::steady_clock::time_point when;
  };
  Mutex flush_mu_;
  CondVar flush_cv_;
  std::deque<Due> flush_queue_ PLEXUS_GUARDED_BY(flush_mu_);  // in the order of `when`
  bool flusher_stop_ PLEXUS_GUARDED_BY(flush_mu_) = false;
  std::thread flusher_;

  std::atomic<std::uint64_t> seq_{0};
  std::atomic<bool> data_down_{false};
  std::atomic<bool> ctl_down_{false};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(RejectReason::kCount)> rejects_{};
  std::array<std::atomic<std::int64_t>, static_cast<std::size_t>(RejectReason::kCount)>
      reject_logged_ns_{};
  std::atomic<std::uint64_t> slow_consumer_events_{0};
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> disconnects_{0};
  std::atomic<std::uint64_t> nodes_joined_{0};
  std::atomic<std::uint64_t> nodes_left_{0};
  std::atomic<std::uint64_t> resyncs_{0};
  std::atomic<std::uint64_t> resync_failures_{0};
  std::atomic<std::uint64_t> snapshots_resynced_{0};
  std::atomic<std::uint64_t> dumps_served_{0};
  std::atomic<std::uint64_t> requests_served_{0};
  // Frames accepted per origin node (by NodeKey), for BridgeStats::peers: counted once per
  // frame received, so without a lock (NodeCounters).
  NodeTable in_by_node_;
};

}  // namespace plexus::cluster::cluster_internal
