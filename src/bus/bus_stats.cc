#include "plexus/bus/bus_stats.h"

#include <cinttypes>
#include <cstdio>
#include <string>

#include "registry.h"

namespace plexus {

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
  return bus_internal::TopicRegistry::Get().Count();
}

std::size_t LiveSubscriptionCount() {
  return bus_internal::SubscriptionRegistry::Get().Count();
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
