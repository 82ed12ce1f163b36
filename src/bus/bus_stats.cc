#include "plexus/bus/bus_stats.h"

#include <cinttypes>
#include <cstdio>
#include <string>

#include "registry.h"

namespace plexus {
namespace bus_internal {

TopicRegistry& TopicRegistry::Get() {
  static auto* registry = new TopicRegistry();
  return *registry;
}

void TopicRegistry::Add(Topic* topic) {
  std::lock_guard lock(mu);
  topic->next_live_ = head;
  if (head != nullptr) head->prev_live_ = topic;
  head = topic;
  ++count;
}

void TopicRegistry::Remove(Topic* topic) {
  std::lock_guard lock(mu);
  if (topic->prev_live_ != nullptr) {
    topic->prev_live_->next_live_ = topic->next_live_;
  } else {
    head = topic->next_live_;
  }
  if (topic->next_live_ != nullptr) topic->next_live_->prev_live_ = topic->prev_live_;
  --count;
}

SubscriptionRegistry& SubscriptionRegistry::Get() {
  static auto* registry = new SubscriptionRegistry();
  return *registry;
}

void SubscriptionRegistry::Add(SubscriptionCore* core) {
  std::lock_guard lock(mu);
  core->next_live_ = head;
  if (head != nullptr) head->prev_live_ = core;
  head = core;
  ++count;
}

void SubscriptionRegistry::Remove(SubscriptionCore* core) {
  std::lock_guard lock(mu);
  if (core->prev_live_ != nullptr) {
    core->prev_live_->next_live_ = core->next_live_;
  } else {
    head = core->next_live_;
  }
  if (core->next_live_ != nullptr) core->next_live_->prev_live_ = core->prev_live_;
  --count;
}

}  // namespace bus_internal

std::vector<TopicStats> ListTopics() {
  std::vector<TopicStats> out;
  bus_internal::TopicRegistry::Get().ForEach([&](const Topic& t) { out.push_back(t.Stats()); });
  return out;
}

std::vector<SubscriptionStats> ListSubscriptions() {
  std::vector<SubscriptionStats> out;
  bus_internal::SubscriptionRegistry::Get().ForEach(
      [&](const bus_internal::SubscriptionCore& s) { out.push_back(s.Stats()); });
  return out;
}

std::size_t LiveTopicCount() {
  auto& r = bus_internal::TopicRegistry::Get();
  std::lock_guard lock(r.mu);
  return r.count;
}

std::size_t LiveSubscriptionCount() {
  auto& r = bus_internal::SubscriptionRegistry::Get();
  std::lock_guard lock(r.mu);
  return r.count;
}

namespace {

const char* ModeName(DeliveryMode mode) {
  switch (mode) {
    case DeliveryMode::kPool:
      return "pool";
    case DeliveryMode::kDedicatedThread:
      return "thread";
    case DeliveryMode::kSynchronous:
      return "sync";
  }
  return "?";
}

}  // namespace

std::string BusStatsText() {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-40s %8s %8s %12s %12s %12s\n", "topic", "subs", "fwd-out",
                "published", "fwd-in", "deliveries");
  out += line;
  for (const TopicStats& t : ListTopics()) {
    std::snprintf(line, sizeof line, "%-40s %8zu %8zu %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n",
                  t.name.c_str(), t.subscribers, t.forwards_out, t.published, t.forwarded_in,
                  t.deliveries);
    out += line;
  }
  out += '\n';
  std::snprintf(line, sizeof line, "%-40s %-6s %10s %10s %10s %8s %8s %8s %7s %9s %5s\n",
                "subscription", "mode", "queued", "dispatched", "filtered", "failed", "dropped",
                "rejected", "depth", "max depth", "alert");
  out += line;
  for (const SubscriptionStats& s : ListSubscriptions()) {
    std::snprintf(line, sizeof line,
                  "%-40s %-6s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " %8" PRIu64
                  " %8" PRIu64 " %7zu %9zu %5s\n",
                  s.id.c_str(), ModeName(s.mode), s.queued, s.dispatched, s.filtered, s.failed,
                  s.dropped, s.rejected, s.depth, s.max_depth, s.alerted ? "yes" : "no");
    out += line;
  }
  return out;
}

}  // namespace plexus
