// The bridge's membership: heartbeats out and in, nodes that join (resync) and leave (clear),
// and the dumps that answer a joining node.
//
// A dump reply is a series of chunks on the requester's inbox, each
//   1 byte: 1 if it is the last chunk, else 0; 2 (alone, the only chunk) if the topic is not
//           bridged on the answering node yet (it is starting): the requester tries again at
//           its next heartbeat rather than take "nothing" for the node's state
//   8 bytes: the watermark, little-endian: the sequence number the dump was taken at (every
//            frame the node sent before it is reflected in the dump)
//   then frames, each as a 4-byte little-endian length and the frame (wire.h)
// so that a cache of any size crosses within the server's payload limit.

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bridge_core.h"
#include "plexus/core/log.h"

namespace plexus::cluster::cluster_internal {

namespace {

void PutLe(std::string& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t GetLe(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

constexpr std::size_t kHeartbeatBytes = 1 + 6 + 8 + 4;

}  // namespace

std::string EncodeHeartbeat(const Heartbeat& hb) {
  std::string out;
  out.push_back(static_cast<char>(hb.kind));
  for (std::uint8_t b : hb.node.bytes()) out.push_back(static_cast<char>(b));
  PutLe(out, hb.incarnation, 8);
  PutLe(out, hb.interval_ms, 4);
  return out;
}

bool DecodeHeartbeat(std::string_view bytes, Heartbeat& hb) {
  if (bytes.size() != kHeartbeatBytes) return false;
  const auto kind = static_cast<std::uint8_t>(bytes[0]);
  if (kind > Heartbeat::kBye) return false;
  hb.kind = static_cast<Heartbeat::Kind>(kind);
  NodeId::Bytes b{};
  bool any = false;
  for (int i = 0; i < 6; ++i) {
    b[i] = static_cast<std::uint8_t>(bytes[1 + i]);
    any = any || b[i] != 0;
  }
  if (!any) return false;
  hb.node = NodeId(b);
  hb.incarnation = GetLe(bytes.data() + 7, 8);
  hb.interval_ms = static_cast<std::uint32_t>(GetLe(bytes.data() + 15, 4));
  return hb.interval_ms > 0;
}

void BridgeCore::SendHeartbeat(Heartbeat::Kind kind) {
  Heartbeat hb;
  hb.kind = kind;
  hb.node = options_.node;
  hb.incarnation = options_.incarnation;
  hb.interval_ms = static_cast<std::uint32_t>(options_.heartbeat_interval.count());
  const std::string bytes = EncodeHeartbeat(hb);
  const std::string subject = prefix_ + "_node.hb";
  natsConnection_Publish(ctl_, subject.c_str(), bytes.data(), static_cast<int>(bytes.size()));
}

void BridgeCore::MembershipLoop() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point next_beat = Clock::now();
  for (;;) {
    std::vector<NodeId> resync;
    std::vector<NodeId> remove;
    bool beat = false;
    {
      MutexLock lock(mu_);
      while (!stopping_ && to_resync_.empty() && to_remove_.empty() && !beat_now_ &&
             Clock::now() < next_beat) {
        cv_.WaitUntil(mu_, next_beat);
      }
      if (stopping_) return;
      const Clock::time_point now = Clock::now();
      if (now >= next_beat) {
        beat = true;
        to_resync_.insert(to_resync_.end(), retry_.begin(), retry_.end());
        retry_.clear();
        // While this node cannot hear anyone, silence proves nothing about the others; nor
        // does it when this thread itself woke up an interval late (a stalled process).
        const bool late = now - next_beat > options_.heartbeat_interval;
        next_beat = now + options_.heartbeat_interval;
        if (late) {
          for (auto& [token, peer] : peers_) peer.last_seen = now;
        } else if (!ctl_down_.load()) {
          for (auto it = peers_.begin(); it != peers_.end();) {
            if (now - it->second.last_seen > it->second.interval * options_.heartbeat_miss_limit) {
              to_remove_.push_back(it->second.node);
              it = peers_.erase(it);
            } else {
              ++it;
            }
          }
        }
      }
      beat = beat || beat_now_;
      beat_now_ = false;
      resync.swap(to_resync_);
      remove.swap(to_remove_);
      resyncs_running_ = resync.size();
    }
    if (beat) SendHeartbeat(Heartbeat::kBeat);
    for (const NodeId& n : remove) NodeGone(n);
    for (const NodeId& n : resync) {
      ResyncWith(n);  // a failure is queued for retry before this one counts as done
      MutexLock lock(mu_);
      --resyncs_running_;
    }
  }
}

void BridgeCore::OnHeartbeat(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  static_cast<BridgeCore*>(closure)->OnHeartbeatBytes(
      std::string_view(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
  natsMsg_Destroy(msg);
}

void BridgeCore::OnHeartbeatBytes(std::string_view bytes) {
  Heartbeat hb;
  if (!DecodeHeartbeat(bytes, hb) || hb.node == options_.node) return;
  const std::string token = NodeToken(hb.node);
  bool joined = false;
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    auto it = peers_.find(token);
    if (hb.kind == Heartbeat::kBye) {
      if (it != peers_.end()) {
        peers_.erase(it);
        to_remove_.push_back(hb.node);
        cv_.NotifyAll();
      }
      return;
    }
    if (it == peers_.end() || it->second.incarnation != hb.incarnation) {
      Peer& p = peers_[token];
      p.node = hb.node;
      p.incarnation = hb.incarnation;
      to_resync_.push_back(hb.node);
      beat_now_ = true;  // so the newcomer hears of this node without waiting an interval
      joined = true;
      cv_.NotifyAll();
    }
    Peer& p = peers_[token];
    p.last_seen = std::chrono::steady_clock::now();
    p.interval = std::chrono::milliseconds(hb.interval_ms);
  }
  if (joined) {
    nodes_joined_.fetch_add(1, std::memory_order_relaxed);
    BridgeAlert alert;
    alert.kind = BridgeAlert::Kind::kNodeJoined;
    alert.node = hb.node;
    Alert(alert);
  }
}

void BridgeCore::NodeGone(const NodeId& node) {
  std::vector<TopicLink*> links;
  {
    MutexLock lock(mu_);
    for (const auto& t : topics_) links.push_back(t.get());
  }
  // Counted before the clears: whoever sees a clear update of the node sees it counted as left.
  nodes_left_.fetch_add(1, std::memory_order_relaxed);
  for (TopicLink* t : links) {
    t->watermarks.Store(NodeKey(node), 0);
    if (t->caching != nullptr && t->caching->IsSubscribed()) t->caching->RemoveNode(node);
  }
  BridgeAlert alert;
  alert.kind = BridgeAlert::Kind::kNodeLeft;
  alert.node = node;
  Alert(alert);
}

void BridgeCore::ResyncWith(const NodeId& node) {
  std::vector<TopicLink*> links;
  {
    MutexLock lock(mu_);
    for (const auto& t : topics_) {
      if (t->caching != nullptr) links.push_back(t.get());
    }
  }
  bool ok = true;
  for (TopicLink* t : links) {
    {
      MutexLock lock(mu_);
      if (stopping_) return;
    }
    ok = ResyncTopic(node, *t) && ok;
  }
  if (links.empty()) return;
  (ok ? resyncs_ : resync_failures_).fetch_add(1, std::memory_order_relaxed);
  if (!ok) {
    // Again at the next heartbeat, for as long as the node is known.
    MutexLock lock(mu_);
    if (peers_.count(NodeToken(node)) != 0) retry_.push_back(node);
  }
}

bool BridgeCore::AlreadyCached(const TopicLink& link, const NodeId& node,
                               const DumpedSnapshot& d) const {
  if (d.id.empty()) return false;
  const Ref<Message> cached = link.caching->GetCache()->GetByNode(&d.message->Type(), d.id, node);
  const Codec* codec = options_.codecs.Find(&d.message->Type());
  if (cached == nullptr || codec == nullptr) return false;
  std::string payload;
  return codec->encode(*cached, payload) && payload == d.payload;
}

bool BridgeCore::ResyncTopic(const NodeId& node, TopicLink& link) {
  // From here on the node's live frames on this topic wait in the gate; Begin returns once a
  // live publish that may have missed it is over, so the cache read next holds all that was
  // delivered live. What waited is released after the dump, whatever became of it.
  link.gate.Begin(NodeKey(node));
  const bool ok = InstallDump(node, link);
  ReleaseHeld(node, link);
  return ok;
}

void BridgeCore::ReleaseHeld(const NodeId& node, TopicLink& link) {
  // After a dump, a frame numbered below its watermark is in it (stale); after a failure the
  // previous watermark applies, as it would have live. The gate opens only once nothing is
  // held, so no live frame of the node overtakes one released here.
  const std::uint64_t key = NodeKey(node);
  std::vector<ResyncGate<Ref<Message>>::Held> batch;
  while (link.gate.TakeOrEnd(batch)) {
    for (const auto& held : batch) Deliver(link, key, held.seq, held.frame);
    batch.clear();
  }
}

bool BridgeCore::InstallDump(const NodeId& node, TopicLink& link) {
  const std::string subject = prefix_ + "_node." + NodeToken(node) + ".dump";
  natsInbox* inbox = nullptr;
  natsSubscription* sub = nullptr;
  natsStatus s = natsInbox_Create(&inbox);
  if (s == NATS_OK) s = natsConnection_SubscribeSync(&sub, ctl_, inbox);
  if (s == NATS_OK) {
    s = natsConnection_PublishRequest(ctl_, subject.c_str(), inbox, link.key.data(),
                                      static_cast<int>(link.key.size()));
  }
  // The whole dump is gathered before any of it is installed: a dump cut short installs
  // nothing, so what waited in the gate meanwhile is released as if no resync had run.
  std::vector<DumpedSnapshot> dump;
  std::uint64_t watermark = 0;
  bool complete = false;
  using Clock = std::chrono::steady_clock;
  Clock::time_point next_beat = Clock::now() + options_.heartbeat_interval;
  Clock::time_point deadline = Clock::now() + options_.request_timeout;  // for the next chunk
  while (s == NATS_OK && !complete) {
    // A long resync, or a long wait for a chunk, must not cost this node its membership: the
    // wait is cut at each heartbeat, which goes out on time (the peers would otherwise take
    // this node for gone and clear it). Stop does not wait for a request to time out either.
    const Clock::time_point now = Clock::now();
    if (now >= next_beat) {
      SendHeartbeat(Heartbeat::kBeat);
      next_beat = now + options_.heartbeat_interval;
    }
    if (now >= deadline) {
      s = NATS_TIMEOUT;
      break;
    }
    {
      MutexLock lock(mu_);
      if (stopping_) {
        s = NATS_CONNECTION_CLOSED;
        break;
      }
    }
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::min(deadline, next_beat) - now);
    natsMsg* m = nullptr;
    s = natsSubscription_NextMsg(&m, sub, std::max<std::int64_t>(1, wait.count()));
    if (s == NATS_TIMEOUT) {
      s = NATS_OK;  // a heartbeat or the deadline is due: see above
      continue;
    }
    if (s != NATS_OK) break;
    deadline = Clock::now() + options_.request_timeout;
    if (natsMsg_IsNoResponders(m)) {
      natsMsg_Destroy(m);
      s = NATS_NO_RESPONDERS;
      break;
    }
    const char* data = natsMsg_GetData(m);
    const auto size = static_cast<std::size_t>(natsMsg_GetDataLength(m));
    if (size < 9 || data[0] == 2) {
      if (size >= 1 && data[0] == 2) s = NATS_NOT_FOUND;  // not bridged there yet
      natsMsg_Destroy(m);
      break;
    }
    complete = data[0] == 1;
    watermark = GetLe(data + 1, 8);
    std::size_t at = 9;
    while (at + 4 <= size) {
      const std::size_t len = GetLe(data + at, 4);
      at += 4;
      if (len > size - at) break;
      DecodedMessage d = DecodeMessage(options_.codecs, std::string_view(data + at, len),
                                       options_.limits, options_.node);
      at += len;
      if (d.reason != RejectReason::kNone) {
        CountReject(d.reason, subject);
        continue;
      }
      dump.push_back(DumpedSnapshot{std::string(d.frame.type_name), std::string(d.frame.id),
                                    std::string(d.frame.payload), std::move(d.message)});
    }
    natsMsg_Destroy(m);
  }
  if (sub != nullptr) {
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
  }
  natsInbox_Destroy(inbox);
  if (!complete) {
    Log(LogLevel::kWarning, "cluster bridge: resync of " + link.subject + " with node " +
                                node.ToString() + " failed: " + natsStatus_GetText(s));
    return false;
  }
  const std::uint64_t key = NodeKey(node);
  // The frames that waited and were sent before the dump was taken are older than it: published
  // first (the live path's checks apply), so that a resync drops none of the node's messages
  // that came in while it ran; the dump then brings only what they did not (it repairs).
  std::vector<ResyncGate<Ref<Message>>::Held> batch;
  while (link.gate.TakeBelow(watermark, batch)) {
    for (const auto& held : batch) Deliver(link, key, held.seq, held.frame);
    batch.clear();
  }
  // Installed before the gate opens: a frame numbered below it that is still on its way is in
  // the dump (stale); the node's first one at or above it may be too (dump_fence.h).
  link.watermarks.Store(key, watermark);
  link.has_watermarks.store(true, std::memory_order_release);
  if (watermark != 0) {
    if (link.check_first_at.Get(key) == 0) link.checks_due.fetch_add(1, std::memory_order_relaxed);
    link.check_first_at.Store(key, watermark);
  }
  std::set<std::pair<std::string, std::string>> seen;  // (type name, id) received
  for (const DumpedSnapshot& d : dump) {
    seen.emplace(d.type_name, d.id);
    if (AlreadyCached(link, node, d)) continue;  // a resync repairs; it does not repeat
    snapshots_resynced_.fetch_add(1, std::memory_order_relaxed);
    InCallback in;
    link.topic->Publish(d.message);
  }
  // What the node no longer has goes too (it may have restarted, or this node missed clears).
  // Everything of the node's in the cache now is as old as the dump or older: what came in
  // after the dump was taken still waits in the gate.
  const Ref<Cache>& cache = link.caching->GetCache();
  for (const Ref<const CacheEntry>& e : cache->DumpEntries()) {
    Ref<Message> snapshot = e->ForNode(node);
    if (snapshot != nullptr && seen.count({e->Type().Name(), e->Id()}) == 0) {
      InCallback in;
      link.topic->Publish(MakeCacheClear(snapshot));
    }
  }
  return true;
}

void BridgeCore::OnDumpRequest(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  static_cast<BridgeCore*>(closure)->AnswerDump(msg);
  natsMsg_Destroy(msg);
}

bool BridgeCore::InLastDump(TopicLink& link, std::uint64_t node, std::uint64_t seq,
                            const Message& message) {
  const std::uint64_t due = link.check_first_at.Get(node);
  if (due == 0 || seq < due) return false;
  link.check_first_at.Store(node, 0);
  link.checks_due.fetch_sub(1, std::memory_order_relaxed);
  if (link.caching == nullptr) return false;
  const Codec* codec = options_.codecs.Find(&message.Type());
  if (codec == nullptr) return false;
  std::string id;
  try {
    id = link.caching->GetCache()->IdOf(message);
  } catch (...) {
    return false;  // the caching topic reports it when the frame is published
  }
  if (id.empty()) return false;
  const Ref<Message> cached =
      link.caching->GetCache()->GetByNode(&message.Type(), id, message.Node());
  if (cached == nullptr) return false;
  std::string a;
  std::string b;
  return codec->encode(*cached, a) && codec->encode(message, b) && a == b;
}

void BridgeCore::AnswerDump(natsMsg* request) {
  const char* reply = natsMsg_GetReply(request);
  if (reply == nullptr || *reply == '\0') return;
  const std::string_view key(natsMsg_GetData(request),
                             static_cast<std::size_t>(natsMsg_GetDataLength(request)));
  TopicLink* link = nullptr;
  {
    MutexLock lock(mu_);
    for (const auto& t : topics_) {
      if (t->key == key) link = t.get();  // lives until Stop has waited for this callback
    }
  }
  if (link == nullptr) {
    // Not bridged here yet: say so, rather than answer with an empty (complete) dump.
    std::string chunk(1, '\2');
    PutLe(chunk, 0, 8);
    natsConnection_Publish(ctl_, reply, chunk.data(), static_cast<int>(chunk.size()));
    natsConnection_FlushTimeout(ctl_, options_.request_timeout.count());
    return;
  }
  // The watermark and the snapshots are taken with the topic's sends held back (dump_fence.h):
  // a frame numbered below the watermark was sent, so its snapshot cached (the cache's
  // subscription runs before the bridge's), before the walk; one numbered above it belongs to a
  // publish that was held back, of which only the first can have been cached before the walk
  // ended. Encoding, which runs codecs, happens after the sends go on again.
  std::vector<std::pair<std::string, Ref<Message>>> snapshots;
  std::uint64_t watermark = 0;
  if (link->caching != nullptr) {
    link->dump_fence.Close();
    watermark = seq_.fetch_add(1, std::memory_order_seq_cst);
    for (const Ref<const CacheEntry>& e : link->caching->GetCache()->DumpEntries()) {
      if (Ref<Message> snapshot = e->ForNode(options_.node)) {
        snapshots.emplace_back(e->Id(), std::move(snapshot));
      }
    }
    link->dump_fence.Open();
    // The frames numbered below the watermark leave before the dump does (the topic
    // connection batches its writes, the control connection does not): a frame that reached
    // the peer after the dump would be stale there, and a subscriber would miss it.
    // (Not while it is down: they wait in its reconnect buffer, and the requester must not.)
    // Frames still coalescing in the link's batch go first, or they would wait out the
    // batch delay and arrive after the dump.
    if (coalesce_) {
      MutexLock lock(link->send_mu);
      SendBatch(*link);
    }
    if (!data_down_.load()) natsConnection_FlushTimeout(data_, options_.request_timeout.count());
  } else {
    watermark = seq_.fetch_add(1, std::memory_order_seq_cst);
  }
  std::string header(1, '\0');
  PutLe(header, watermark, 8);
  std::string chunk = header;
  std::string frame;
  auto send = [&](bool last) {
    chunk[0] = last ? 1 : 0;
    natsConnection_Publish(ctl_, reply, chunk.data(), static_cast<int>(chunk.size()));
    chunk = header;
  };
  for (const auto& [id, snapshot] : snapshots) {
    frame.clear();
    if (!EncodeMessage(options_.codecs, *snapshot, id, seq_.fetch_add(1, std::memory_order_relaxed),
                       frame)) {
      continue;
    }
    PutLe(chunk, frame.size(), 4);
    chunk += frame;
    if (chunk.size() >= options_.dump_chunk_bytes) send(false);
  }
  send(true);
  natsConnection_FlushTimeout(ctl_, options_.request_timeout.count());
  dumps_served_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace plexus::cluster::cluster_internal
