#include "consumers.h"

#include <algorithm>
#include <optional>
#include <string>

#include "plexus/core/clock.h"

namespace sim {

namespace {
// A partial CDR batch is handed over once its first record is this old.
constexpr std::int64_t kCdrBatchAgeNs = 20'000'000;
}  // namespace

Consumers::Consumers(const plexus::Ref<plexus::Topic>& all,
                     const plexus::Ref<plexus::ThreadPool>& pool, const ConsumersConfig& config,
                     CdrWriter& cdr, std::FILE* events)
    : config_(config), cdr_(cdr), events_(events) {
  devices_.calls_up.assign(config.devices, 0);
  plexus::SubscriptionOptions options;
  options.pool = pool;
  options.high_water = config.queue_limit;
  options.low_water = config.queue_limit / 2;

  cdr_router_ = plexus::MessageRouter::Create(all, options);
  cdr_router_.AddRoute(CallEndedType(), [this](const CallEnded& record, const plexus::Message&) {
    const std::int64_t now = plexus::MonotonicNanos();
    if (cdr_batch_.empty()) cdr_batch_started_ns_ = now;
    cdr_batch_.push_back(record);
    ++cdr_records_;
    if (cdr_batch_.size() >= config_.cdr_batch || now - cdr_batch_started_ns_ >= kCdrBatchAgeNs) {
      cdr_.Submit(std::exchange(cdr_batch_, {}));
    }
  });

  device_router_ = plexus::MessageRouter::Create(all, options);
  device_router_.AddRoute(
      CallSnapshotType(), [this](const CallSnapshot& s, const plexus::Message&) {
        devices_.latency.Add(plexus::MonotonicNanos() - s.sent_ns);
        if (s.state != CallState::kDialing) return;
        if (devices_.calls_up[s.device]++ == 0) {
          const std::uint32_t now = devices_.in_use.load(std::memory_order_relaxed) + 1;
          devices_.in_use.store(now, std::memory_order_relaxed);
          devices_.peak_in_use = std::max(devices_.peak_in_use, now);
          if (config_.on_device_change) config_.on_device_change(s.device, true);
        }
      });
  device_router_.AddRoute(CallEventType(), [this](const CallEvent& e, const plexus::Message&) {
    devices_.latency.Add(plexus::MonotonicNanos() - e.sent_ns);
  });
  device_router_.AddRoute(CallEndedType(), [this](const CallEnded& r, const plexus::Message&) {
    devices_.latency.Add(plexus::MonotonicNanos() - r.sent_ns);
    if (--devices_.calls_up[r.device] == 0) {
      devices_.in_use.store(devices_.in_use.load(std::memory_order_relaxed) - 1,
                            std::memory_order_relaxed);
      if (config_.on_device_change) config_.on_device_change(r.device, false);
    }
  });

  plexus::SubscriptionOptions stream_options = options;
  stream_options.policy = plexus::QueuePolicy::kDropOldest;
  stream_options.capacity = config.queue_limit;
  // Raised a little below the capacity, so the alert shows before the first drop.
  stream_options.high_water = std::max<std::uint32_t>(config.queue_limit * 3 / 4, 1);
  stream_options.low_water = config.queue_limit / 2;
  event_router_ = plexus::MessageRouter::Create(all, stream_options);
  event_router_.AddFormatRoute(plexus::MessageFormat::kJson, [this](const plexus::Message& m) {
    const std::optional<std::string> line = m.ToJson();
    if (!line) return;
    ++stream_lines_;
    if (events_ != nullptr) {
      std::fwrite(line->data(), 1, line->size(), events_);
      std::fputc('\n', events_);
    }
  });
}

bool Consumers::Congested() const {
  // The stream sheds instead: only the consumers that must see everything push back.
  return cdr_router_.GetSubscription().Stats().alerted ||
         device_router_.GetSubscription().Stats().alerted || cdr_.Congested();
}

std::size_t Consumers::Depth() const {
  return std::max({cdr_router_.GetSubscription().Stats().depth,
                   device_router_.GetSubscription().Stats().depth,
                   event_router_.GetSubscription().Stats().depth});
}

std::uint64_t Consumers::Delivered() const {
  return cdr_router_.GetSubscription().Stats().dispatched +
         device_router_.GetSubscription().Stats().dispatched +
         event_router_.GetSubscription().Stats().dispatched;
}

void Consumers::UnsubscribeAndJoin() {
  cdr_router_.UnsubscribeAndJoin();
  device_router_.UnsubscribeAndJoin();
  event_router_.UnsubscribeAndJoin();
  cdr_.Submit(std::exchange(cdr_batch_, {}));
  if (events_ != nullptr) std::fflush(events_);
}

std::uint64_t Consumers::StreamDropped() const {
  return event_router_.GetSubscription().Stats().dropped;
}

std::vector<Consumers::QueueFigures> Consumers::Queues() const {
  std::vector<QueueFigures> out;
  for (const auto& [name, router] :
       {std::pair{"router cdr", &cdr_router_}, std::pair{"router devices", &device_router_},
        std::pair{"router event-stream", &event_router_}}) {
    const plexus::SubscriptionStats stats = router->GetSubscription().Stats();
    out.push_back({name, stats.max_depth, stats.dropped});
  }
  return out;
}

}  // namespace sim
