// The bridge: its connections, the topics it carries in and out, its services, and its stop.
// Membership (heartbeats, expiry, resync) is in bridge_membership.cc.

#include "plexus/cluster/bridge.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <utility>

#include "bridge_core.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"

namespace plexus::cluster {

namespace cluster_internal {

namespace {

thread_local int tl_in_callback = 0;

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string StatusText(natsStatus s) {
  return natsStatus_GetText(s);
}

// Subscribes `cb` asynchronously with `closure`, asking for a completion call; null if libnats
// refused (logged).
natsSubscription* SubscribeAsync(natsConnection* nc, const std::string& subject, natsMsgHandler cb,
                                 void* closure, natsOnCompleteCB done, void* done_closure,
                                 int pending_msgs, int pending_bytes) {
  natsSubscription* sub = nullptr;
  natsStatus s = natsConnection_Subscribe(&sub, nc, subject.c_str(), cb, closure);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, pending_msgs, pending_bytes);
  if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(sub, done, done_closure);
  if (s != NATS_OK) {
    Log(LogLevel::kError, "cluster bridge: cannot subscribe to " + subject + ": " + StatusText(s));
    if (sub != nullptr) {
      natsSubscription_Unsubscribe(sub);
      natsSubscription_Destroy(sub);
    }
    return nullptr;
  }
  return sub;
}

}  // namespace

InCallback::InCallback() noexcept {
  ++tl_in_callback;
}
InCallback::~InCallback() {
  --tl_in_callback;
}
bool InCallback::Active() noexcept {
  return tl_in_callback > 0;
}

std::string NodeToken(const NodeId& node) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : node.bytes()) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::uint64_t NodeKey(const NodeId& node) {
  std::uint64_t key = 0;
  for (std::uint8_t b : node.bytes()) key = key << 8 | b;
  return key;
}

std::string SubjectToken(std::string_view name) {
  std::string out;
  for (char c : name) {
    const bool bad =
        c == '.' || c == '*' || c == '>' || static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
    out.push_back(bad ? '_' : c);
  }
  if (out.empty()) out = "_";
  return out;
}

BridgeCore::BridgeCore(BridgeOptions options)
    : options_(std::move(options)),
      prefix_("plexus." + options_.cluster + "."),
      node_token_(NodeToken(options_.node)),
      coalesce_(!options_.send_asap && options_.batch_delay.count() > 0),
      batch_max_bytes_(std::min(options_.batch_max_bytes, options_.limits.max_batch_bytes)),
      // The container counts its frames in two bytes.
      batch_max_frames_(std::min<std::size_t>(options_.limits.max_batch_frames, 0xffff)),
      // A later run numbers on from its incarnation, above what an earlier run sent.
      seq_(options_.incarnation) {}

BridgeCore::~BridgeCore() {
  Stop(/*orderly=*/true, SourceLocation::current());
}

natsConnection* BridgeCore::Connect(bool send_asap, ConnectionRole* connection_role) {
  const char* role = connection_role->data ? "data" : "ctl";
  natsOptions* o = nullptr;
  natsConnection* nc = nullptr;
  std::vector<const char*> urls;
  for (const std::string& u : options_.servers) urls.push_back(u.c_str());
  const std::string name = "plexus-" + options_.cluster + "-" + node_token_ + "-" + role;
  natsStatus s = natsOptions_Create(&o);
  if (s == NATS_OK) s = natsOptions_SetServers(o, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(o, true);
  if (s == NATS_OK) s = natsOptions_SetName(o, name.c_str());
  if (s == NATS_OK) s = natsOptions_SetNoEcho(o, true);
  if (s == NATS_OK) s = natsOptions_SetSendAsap(o, send_asap);
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(o, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, options_.max_reconnects);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, options_.reconnect_wait.count());
  // libnats reads 0 as "the default (8 MB)": one byte is as good as none.
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectBufSize(o, std::max(1, options_.reconnect_buffer_bytes));
  }
  if (s == NATS_OK) s = natsOptions_SetTimeout(o, options_.connect_timeout.count());
  if (s == NATS_OK) s = natsOptions_SetMaxPendingMsgs(o, options_.pending_msgs_limit);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, &BridgeCore::OnError, connection_role);
  if (s == NATS_OK) {
    s = natsOptions_SetDisconnectedCB(o, &BridgeCore::OnDisconnected, connection_role);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectedCB(o, &BridgeCore::OnReconnected, connection_role);
  }
  if (s == NATS_OK) s = natsOptions_SetClosedCB(o, &BridgeCore::OnClosed, connection_role);
  if (s == NATS_OK) s = natsConnection_Connect(&nc, o);
  natsOptions_Destroy(o);
  if (s == NATS_OK) {
    MutexLock lock(mu_);
    ++connections_;
  }
  if (s != NATS_OK) {
    Log(LogLevel::kError,
        std::string("cluster bridge: cannot connect (") + role + "): " + StatusText(s));
    return nullptr;
  }
  return nc;
}

bool BridgeCore::Start() {
  data_ = Connect(options_.send_asap, &data_role_);
  if (data_ == nullptr) return false;
  ctl_ = Connect(/*send_asap=*/true, &ctl_role_);
  if (ctl_ == nullptr) return false;
  hb_sub_ = SubscribeAsync(ctl_, prefix_ + "_node.hb", &BridgeCore::OnHeartbeat, this,
                           &BridgeCore::OnComplete, this, options_.pending_msgs_limit,
                           options_.pending_bytes_limit);
  dump_sub_ = SubscribeAsync(ctl_, prefix_ + "_node." + node_token_ + ".dump",
                             &BridgeCore::OnDumpRequest, this, &BridgeCore::OnComplete, this,
                             options_.pending_msgs_limit, options_.pending_bytes_limit);
  if (hb_sub_ == nullptr || dump_sub_ == nullptr) return false;
  // The subscriptions are known to the server before anyone hears of this node.
  natsConnection_FlushTimeout(ctl_, options_.connect_timeout.count());
  {
    MutexLock lock(mu_);
    beat_now_ = true;
  }
  membership_ = std::thread([this] { MembershipLoop(); });
  if (coalesce_) flusher_ = std::thread([this] { FlusherLoop(); });
  return true;
}

std::string BridgeCore::SubjectFor(std::string_view name) const {
  return prefix_ + "topic." + SubjectToken(name);
}

bool BridgeCore::AddTopic(const Ref<Topic>& topic, BridgeTopicOptions options,
                          SourceLocation where) {
  if (topic == nullptr) {
    ReportMisuse("Bridge::AddTopic: null topic", where);
    return false;
  }
  if (options.caching != nullptr && options.caching->Original() != topic) {
    ReportMisuse("Bridge::AddTopic: the caching topic does not cache this topic", where);
    return false;
  }
  auto link = std::make_unique<TopicLink>();
  link->core = this;
  link->topic = topic;
  link->caching = std::move(options.caching);
  link->key = SubjectToken(options.subject.empty() ? topic->Name() : options.subject);
  link->subject = prefix_ + "topic." + link->key;
  TopicLink* raw = link.get();
  {
    MutexLock lock(mu_);
    if (stopping_) {
      ReportMisuse("Bridge::AddTopic after Stop", where);
      return false;
    }
    for (const auto& t : topics_) {
      if (t->topic == topic) {
        ReportMisuse("Bridge::AddTopic: topic '" + topic->Name() + "' is bridged already", where);
        return false;
      }
      if (t->key == raw->key) {
        ReportMisuse("Bridge::AddTopic: subject '" + raw->subject + "' is taken", where);
        return false;
      }
    }
    // Listed before it subscribes, so Stop (which takes the list) always finds it.
    topics_.push_back(std::move(link));
  }
  raw->in =
      SubscribeAsync(data_, raw->subject, &BridgeCore::OnTopicMessage, raw, &BridgeCore::OnComplete,
                     this, options_.pending_msgs_limit, options_.pending_bytes_limit);
  SubscriptionOptions so;
  so.mode = DeliveryMode::kSynchronous;  // encode and hand to libnats on the publisher's thread
  raw->out = Subscription::Create(
      topic,
      [raw](const Message& message, bool is_final) {
        if (is_final) return;
        // Kept out of the moment a dump of the topic's cache is taken (dump_fence.h).
        raw->dump_fence.Enter();
        raw->core->SendLocal(*raw, message);
        raw->dump_fence.Exit();
      },
      so, where);
  natsConnection_FlushTimeout(data_, options_.connect_timeout.count());
  if (raw->caching != nullptr) {
    // The nodes met before this topic was bridged have snapshots of it too.
    MutexLock lock(mu_);
    for (const auto& [token, peer] : peers_) to_resync_.push_back(peer.node);
    cv_.NotifyAll();
  }
  return raw->in != nullptr;
}

void BridgeCore::Receive(TopicLink& link, std::string_view bytes) {
  DecodedMessage d = DecodeMessage(options_.codecs, bytes, options_.limits, options_.node);
  if (d.reason != RejectReason::kNone) {
    CountReject(d.reason, link.subject);
    return;
  }
  const std::uint64_t node = NodeKey(d.frame.node);
  // While this node's dump is being fetched and installed, its frames wait for the dump, which
  // releases them after itself (ResyncTopic).
  if (link.gate.Hold(node, d.frame.seq, d.message)) return;
  Deliver(link, node, d.frame.seq, d.message);
  link.gate.EndLive();
}

void BridgeCore::Deliver(TopicLink& link, std::uint64_t node, std::uint64_t seq,
                         const Ref<Message>& message) {
  if (link.has_watermarks.load(std::memory_order_acquire)) {
    if (seq < link.watermarks.Get(node)) {
      link.stale.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  if (link.checks_due.load(std::memory_order_relaxed) != 0) [[unlikely]] {
    if (InLastDump(link, node, seq, *message)) {
      link.stale.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  link.messages_in.fetch_add(1, std::memory_order_relaxed);
  in_by_node_.Add(node);
  InCallback in;
  link.topic->Publish(message);
}

void BridgeCore::CountReject(RejectReason reason, const std::string& subject) {
  const auto i = static_cast<std::size_t>(reason);
  if (i >= rejects_.size()) return;
  const std::uint64_t n = rejects_[i].fetch_add(1, std::memory_order_relaxed) + 1;
  const std::int64_t now = NowNs();
  std::int64_t last = reject_logged_ns_[i].load(std::memory_order_relaxed);
  const std::int64_t gap = std::chrono::nanoseconds(options_.reject_log_interval).count();
  // One thread wins the right to log per interval; the others only count.
  if ((last == 0 || now - last >= gap) &&
      reject_logged_ns_[i].compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    Log(LogLevel::kWarning, "cluster bridge: refused a frame on " + subject + " (" +
                                std::string(RejectReasonName(reason)) + "; " + std::to_string(n) +
                                " so far)");
  }
}

void BridgeCore::Alert(const BridgeAlert& alert) {
  if (!options_.on_alert) return;
  InCallback in;
  try {
    options_.on_alert(alert);
  } catch (const std::exception& e) {
    Log(LogLevel::kError, std::string("cluster bridge: alert callback threw: ") + e.what());
  } catch (...) {
    Log(LogLevel::kError, "cluster bridge: alert callback threw");
  }
}

void BridgeCore::OnTopicMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* link = static_cast<TopicLink*>(closure);
  BridgeCore* core = link->core;
  const std::string_view bytes(natsMsg_GetData(msg),
                               static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  if (IsBatch(bytes)) {
    // Checked whole before any frame is used: a malformed container is one refusal, and none
    // of its frames is delivered. A well-formed one's frames are each received as if it had
    // come alone (a frame refused there does not stop the next).
    BatchReader reader(bytes, core->options_.limits);
    if (reader.reason() != RejectReason::kNone) core->CountReject(reader.reason(), link->subject);
    for (std::string_view frame; reader.Next(frame);) core->Receive(*link, frame);
  } else {
    core->Receive(*link, bytes);
  }
  natsMsg_Destroy(msg);
}

void BridgeCore::OnComplete(void* closure) {
  auto* core = static_cast<BridgeCore*>(closure);
  MutexLock lock(core->mu_);
  ++core->completions_;
  core->cv_.NotifyAll();
}

void BridgeCore::WaitForCompletions(int n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  MutexLock lock(mu_);
  while (completions_ < n) {
    if (!cv_.WaitUntil(mu_, deadline) && completions_ < n) {
      Log(LogLevel::kError, "cluster bridge: subscriptions did not complete in time");
      break;
    }
  }
  completions_ = 0;
}

void BridgeCore::OnError(natsConnection*, natsSubscription* sub, natsStatus err, void* closure) {
  BridgeCore* core = static_cast<ConnectionRole*>(closure)->core;
  if (err != NATS_SLOW_CONSUMER) {
    Log(LogLevel::kWarning, "cluster bridge: " + StatusText(err));
    return;
  }
  core->slow_consumer_events_.fetch_add(1, std::memory_order_relaxed);
  BridgeAlert alert;
  alert.kind = BridgeAlert::Kind::kSlowConsumer;
  if (sub != nullptr) {
    natsSubscription_GetDropped(sub, &alert.dropped);
    MutexLock lock(core->mu_);
    for (const auto& t : core->topics_) {
      if (t->in == sub) alert.subject = t->subject;
    }
  }
  Log(LogLevel::kWarning,
      "cluster bridge: slow consumer on " +
          (alert.subject.empty() ? std::string("a control subject") : alert.subject) + " (" +
          std::to_string(alert.dropped) + " dropped)");
  core->Alert(alert);
}

void BridgeCore::OnDisconnected(natsConnection*, void* closure) {
  const auto* role = static_cast<ConnectionRole*>(closure);
  BridgeCore* core = role->core;
  {
    MutexLock lock(core->mu_);
    if (core->stopping_) return;  // its own close
  }
  core->disconnects_.fetch_add(1, std::memory_order_relaxed);
  (role->data ? core->data_down_ : core->ctl_down_).store(true);
  BridgeAlert alert;
  alert.kind = BridgeAlert::Kind::kDisconnected;
  alert.subject = role->data ? "data" : "control";
  core->Alert(alert);
}

void BridgeCore::OnClosed(natsConnection*, void* closure) {
  BridgeCore* core = static_cast<ConnectionRole*>(closure)->core;
  MutexLock lock(core->mu_);
  ++core->closed_;
  core->cv_.NotifyAll();
}

void BridgeCore::OnReconnected(natsConnection*, void* closure) {
  const auto* role = static_cast<ConnectionRole*>(closure);
  BridgeCore* core = role->core;
  core->reconnects_.fetch_add(1, std::memory_order_relaxed);
  (role->data ? core->data_down_ : core->ctl_down_).store(false);
  {
    // What was missed while away comes back by a resync with every known node; their
    // heartbeats were missed too, so the clocks restart.
    MutexLock lock(core->mu_);
    const auto now = std::chrono::steady_clock::now();
    for (auto& [token, peer] : core->peers_) {
      peer.last_seen = now;
      core->to_resync_.push_back(peer.node);
    }
    core->beat_now_ = true;
    core->cv_.NotifyAll();
  }
  BridgeAlert alert;
  alert.kind = BridgeAlert::Kind::kReconnected;
  alert.subject = role->data ? "data" : "control";
  core->Alert(alert);
}

bool BridgeCore::Serve(std::string_view service, Bridge::ServiceHandler handler,
                       SourceLocation where) {
  if (service.empty() || !handler) {
    ReportMisuse("Bridge::Serve: empty service name or handler", where);
    return false;
  }
  auto link = std::make_unique<ServiceLink>();
  link->core = this;
  link->name = std::string(service);
  link->subject = prefix_ + "svc." + SubjectToken(service) + "." + node_token_;
  link->handler = std::move(handler);
  ServiceLink* raw = link.get();
  {
    MutexLock lock(mu_);
    if (stopping_) {
      ReportMisuse("Bridge::Serve after Stop", where);
      return false;
    }
    for (const auto& s : services_) {
      if (s->subject == raw->subject) {
        ReportMisuse("Bridge::Serve: service '" + raw->name + "' is served already", where);
        return false;
      }
    }
    services_.push_back(std::move(link));
  }
  raw->sub = SubscribeAsync(ctl_, raw->subject, &BridgeCore::OnServiceRequest, raw,
                            &BridgeCore::OnComplete, this, options_.pending_msgs_limit,
                            options_.pending_bytes_limit);
  natsConnection_FlushTimeout(ctl_, options_.connect_timeout.count());
  return raw->sub != nullptr;
}

void BridgeCore::OnServiceRequest(natsConnection* nc, natsSubscription*, natsMsg* msg,
                                  void* closure) {
  auto* link = static_cast<ServiceLink*>(closure);
  std::string reply;
  {
    InCallback in;
    try {
      reply = link->handler(std::string_view(natsMsg_GetData(msg),
                                             static_cast<std::size_t>(natsMsg_GetDataLength(msg))));
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "cluster bridge: service '" + link->name + "' threw: " + e.what());
    } catch (...) {
      Log(LogLevel::kError, "cluster bridge: service '" + link->name + "' threw");
    }
  }
  if (const char* to = natsMsg_GetReply(msg); to != nullptr && *to != '\0') {
    natsConnection_Publish(nc, to, reply.data(), static_cast<int>(reply.size()));
    link->core->requests_served_.fetch_add(1, std::memory_order_relaxed);
  }
  natsMsg_Destroy(msg);
}

RequestResult BridgeCore::Request(const NodeId& node, std::string_view service,
                                  std::string_view payload, std::chrono::milliseconds timeout,
                                  SourceLocation where) {
  RequestResult result;
  if (node.IsNone() || service.empty()) {
    ReportMisuse("Bridge::Request: no node or no service", where);
    result.error = "misuse";
    return result;
  }
  {
    MutexLock lock(mu_);
    if (stopping_) {
      result.error = "stopped";
      return result;
    }
  }
  if (timeout.count() < 0) timeout = options_.request_timeout;
  const std::string subject = prefix_ + "svc." + SubjectToken(service) + "." + NodeToken(node);
  natsMsg* reply = nullptr;
  const natsStatus s = natsConnection_Request(&reply, ctl_, subject.c_str(), payload.data(),
                                              static_cast<int>(payload.size()), timeout.count());
  if (s == NATS_OK && reply != nullptr && !natsMsg_IsNoResponders(reply)) {
    result.status = RequestResult::Status::kOk;
    result.payload.assign(natsMsg_GetData(reply),
                          static_cast<std::size_t>(natsMsg_GetDataLength(reply)));
  } else if (s == NATS_NO_RESPONDERS || (s == NATS_OK && reply != nullptr)) {
    result.status = RequestResult::Status::kNoResponders;
  } else if (s == NATS_TIMEOUT) {
    result.status = RequestResult::Status::kTimeout;
  } else {
    result.error = StatusText(s);
  }
  if (reply != nullptr) natsMsg_Destroy(reply);
  return result;
}

bool BridgeCore::Flush(std::chrono::milliseconds timeout) {
  {
    MutexLock lock(mu_);
    if (stopping_) return false;
  }
  SendAllBatches();
  return natsConnection_FlushTimeout(data_, timeout.count()) == NATS_OK;
}

void BridgeCore::Stop(bool orderly, SourceLocation where) {
  if (InCallback::Active()) {
    ReportMisuse("Bridge::Stop from a callback of the bridge", where);
    return;
  }
  std::vector<TopicLink*> topics;
  std::vector<natsSubscription*> subs;
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.NotifyAll();
    for (const auto& t : topics_) {
      topics.push_back(t.get());
      if (t->in != nullptr) subs.push_back(t->in);
    }
    for (const auto& s : services_) {
      if (s->sub != nullptr) subs.push_back(s->sub);
    }
  }
  if (hb_sub_ != nullptr) subs.push_back(hb_sub_);
  if (dump_sub_ != nullptr) subs.push_back(dump_sub_);

  // 1. The bus side: what was published before is in libnats' buffer, or in a batch, when
  // this returns; the batches follow it (a crash loses them, as a dead process would).
  for (TopicLink* t : topics) t->out.UnsubscribeAndJoin(where);
  StopFlusher();
  if (orderly) SendAllBatches();
  // 2. Membership: goodbye, so the peers clear this node at once.
  if (membership_.joinable()) membership_.join();
  if (orderly && ctl_ != nullptr) {
    SendHeartbeat(Heartbeat::kBye);
    natsConnection_FlushTimeout(ctl_, options_.connect_timeout.count());
  }
  // 3. The NATS side: what was received is delivered (drain), or dropped (crash).
  for (natsSubscription* s : subs) {
    if (orderly) {
      natsSubscription_Drain(s);
    } else {
      natsSubscription_Unsubscribe(s);
    }
  }
  if (orderly) {
    for (natsSubscription* s : subs) natsSubscription_WaitForDrainCompletion(s, 10000);
    if (data_ != nullptr) natsConnection_FlushTimeout(data_, 10000);
  }
  if (data_ != nullptr) natsConnection_Close(data_);
  if (ctl_ != nullptr) natsConnection_Close(ctl_);
  // No message callback runs past this point: each subscription's completion came.
  WaitForCompletions(static_cast<int>(subs.size()));
  {
    // Nor a connection callback: the closed callback is each connection's last.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    MutexLock lock(mu_);
    while (closed_ < connections_) {
      if (!cv_.WaitUntil(mu_, deadline) && closed_ < connections_) {
        Log(LogLevel::kError, "cluster bridge: connections did not close in time");
        break;
      }
    }
  }
  for (natsSubscription* s : subs) natsSubscription_Destroy(s);
  if (data_ != nullptr) natsConnection_Destroy(data_);
  if (ctl_ != nullptr) natsConnection_Destroy(ctl_);
  data_ = ctl_ = nullptr;
  hb_sub_ = dump_sub_ = nullptr;
  MutexLock lock(mu_);
  for (const auto& t : topics_) t->in = nullptr;
  for (const auto& s : services_) s->sub = nullptr;
  peers_.clear();
  stopped_ = true;
}

std::vector<NodeId> BridgeCore::Nodes() const {
  std::vector<NodeId> out;
  MutexLock lock(mu_);
  for (const auto& [token, peer] : peers_) out.push_back(peer.node);
  return out;
}

BridgeStats BridgeCore::Stats() const {
  BridgeStats st;
  st.node = options_.node;
  st.incarnation = options_.incarnation;
  {
    MutexLock lock(mu_);
    for (const auto& t : topics_) {
      BridgeTopicStats ts;
      ts.topic = t->topic->Name();
      ts.subject = t->subject;
      ts.messages_out = t->messages_out.load(std::memory_order_relaxed);
      ts.batches_out = t->batches_out.load(std::memory_order_relaxed);
      ts.messages_in = t->messages_in.load(std::memory_order_relaxed);
      ts.encode_failures = t->encode_failures.load(std::memory_order_relaxed);
      ts.send_failures = t->send_failures.load(std::memory_order_relaxed);
      ts.stale = t->stale.load(std::memory_order_relaxed);
      ts.held_during_resync = t->gate.HeldTotal();
      if (t->in != nullptr) {
        natsSubscription_GetDropped(t->in, &ts.nats_dropped);
        int pending = 0;
        natsSubscription_GetPending(t->in, &pending, nullptr);
        ts.nats_pending = pending;
      }
      st.topics.push_back(std::move(ts));
    }
  }
  for (std::size_t i = 0; i < rejects_.size(); ++i) {
    st.rejects[i] = rejects_[i].load(std::memory_order_relaxed);
    st.rejects_total += st.rejects[i];
  }
  st.slow_consumer_events = slow_consumer_events_.load(std::memory_order_relaxed);
  st.reconnects = reconnects_.load(std::memory_order_relaxed);
  st.disconnects = disconnects_.load(std::memory_order_relaxed);
  st.disconnected = data_down_.load() || ctl_down_.load();
  st.nodes = Nodes();
  st.nodes_joined = nodes_joined_.load(std::memory_order_relaxed);
  st.nodes_left = nodes_left_.load(std::memory_order_relaxed);
  st.resyncs = resyncs_.load(std::memory_order_relaxed);
  st.resync_failures = resync_failures_.load(std::memory_order_relaxed);
  st.snapshots_resynced = snapshots_resynced_.load(std::memory_order_relaxed);
  st.dumps_served = dumps_served_.load(std::memory_order_relaxed);
  st.requests_served = requests_served_.load(std::memory_order_relaxed);
  {
    const auto now = std::chrono::steady_clock::now();
    MutexLock lock(mu_);
    st.resyncs_pending = to_resync_.size() + retry_.size() + resyncs_running_;
    st.nodes.clear();  // the same set as the peers, taken under one lock
    for (const auto& [token, peer] : peers_) {
      st.nodes.push_back(peer.node);
      BridgeStats::Peer p;
      p.node = peer.node;
      p.incarnation = peer.incarnation;
      p.since_heartbeat =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - peer.last_seen);
      p.heartbeat_interval = peer.interval;
      st.peers.push_back(p);
    }
  }
  for (BridgeStats::Peer& p : st.peers) p.messages_in = in_by_node_.Get(NodeKey(p.node));
  return st;
}

}  // namespace cluster_internal

// --- Bridge ----------------------------------------------------------------------------------

std::string_view RequestStatusName(RequestResult::Status status) noexcept {
  switch (status) {
    case RequestResult::Status::kOk:
      return "ok";
    case RequestResult::Status::kTimeout:
      return "timeout";
    case RequestResult::Status::kNoResponders:
      return "no_responders";
    case RequestResult::Status::kError:
      return "error";
  }
  return "error";
}

std::unique_ptr<Bridge> Bridge::Create(BridgeOptions options, SourceLocation where) {
  if (options.servers.empty() || options.node.IsNone() || options.cluster.empty() ||
      options.heartbeat_interval.count() <= 0 || options.heartbeat_miss_limit < 1) {
    ReportMisuse("Bridge::Create: no servers, no node, no cluster name or no heartbeat", where);
    return nullptr;
  }
  if (options.incarnation == 0) {
    options.incarnation =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
  }
  auto core = std::make_unique<cluster_internal::BridgeCore>(std::move(options));
  if (!core->Start()) return nullptr;  // the core's destructor closes what was opened
  return std::unique_ptr<Bridge>(new Bridge(std::move(core)));
}

Bridge::Bridge(std::unique_ptr<cluster_internal::BridgeCore> core) : core_(std::move(core)) {}

Bridge::~Bridge() {
  Stop();
}

bool Bridge::AddTopic(const Ref<Topic>& topic, BridgeTopicOptions options, SourceLocation where) {
  return core_->AddTopic(topic, std::move(options), where);
}

bool Bridge::Serve(std::string_view service, ServiceHandler handler, SourceLocation where) {
  return core_->Serve(service, std::move(handler), where);
}

RequestResult Bridge::Request(const NodeId& node, std::string_view service,
                              std::string_view payload, std::chrono::milliseconds timeout,
                              SourceLocation where) {
  return core_->Request(node, service, payload, timeout, where);
}

bool Bridge::Flush(std::chrono::milliseconds timeout) {
  return core_->Flush(timeout);
}

void Bridge::Stop(SourceLocation where) {
  core_->Stop(/*orderly=*/true, where);
}
void Bridge::Crash() {
  core_->Stop(/*orderly=*/false, SourceLocation::current());
}

const NodeId& Bridge::Node() const noexcept {
  return core_->options().node;
}
std::uint64_t Bridge::Incarnation() const noexcept {
  return core_->options().incarnation;
}
std::string Bridge::SubjectFor(std::string_view name) const {
  return core_->SubjectFor(name);
}
std::vector<NodeId> Bridge::Nodes() const {
  return core_->Nodes();
}
BridgeStats Bridge::Stats() const {
  return core_->Stats();
}

}  // namespace plexus::cluster
