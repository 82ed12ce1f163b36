#include "plexus/bus/bus_stats.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>

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

std::vector<MessageRouterStats> ListRouters() {
  std::vector<MessageRouterStats> routers = bus_internal::ListRouterCores();
  if (routers.empty()) return routers;
  // Two walks, not one: the router registry's lock is never held with the subscriptions'.
  std::unordered_map<std::string, SubscriptionStats> subscriptions;
  for (SubscriptionStats& s : ListSubscriptions()) subscriptions.emplace(s.id, std::move(s));
  for (MessageRouterStats& r : routers) {
    auto it = subscriptions.find(r.subscription.id);
    if (it != subscriptions.end()) r.subscription = std::move(it->second);
  }
  return routers;
}

namespace {

// The caches' serials, by address, for naming a caching topic's cache.
std::unordered_map<const Cache*, std::uint64_t> CacheSerials() {
  std::unordered_map<const Cache*, std::uint64_t> serials;
  bus_internal::CacheRegistry::Get().ForEach(
      [&](const Cache& c, std::uint64_t serial) { serials.emplace(&c, serial); });
  return serials;
}

}  // namespace

std::vector<CachingTopicListing> ListCachingTopics() {
  const std::unordered_map<const Cache*, std::uint64_t> serials = CacheSerials();
  std::vector<CachingTopicListing> out;
  bus_internal::CachingTopicRegistry::Get().ForEach([&](const CachingTopic& ct, std::uint64_t) {
    CachingTopicListing& l = out.emplace_back();
    l.output = ct.Output()->Name();
    // The caching topic holds the original (its core does), so this reference is never the
    // last one: dropping it under the registry's lock destroys nothing.
    if (Ref<Topic> original = ct.Original()) l.original = original->Name();
    auto it = serials.find(ct.GetCache().get());
    if (it != serials.end()) l.cache_id = it->second;
    l.subscribed = ct.IsSubscribed();
    l.stats = ct.Stats();
  });
  return out;
}

std::vector<CacheListing> ListCaches() {
  std::vector<CacheListing> out;
  // A census holds no entry and runs no user code, so it may run under the registry's lock.
  bus_internal::CacheRegistry::Get().ForEach([&](const Cache& c, std::uint64_t serial) {
    CacheListing& l = out.emplace_back();
    l.id = serial;
    l.stats = c.Stats();
    CacheCensus census = c.Census();
    l.aggregates = census.aggregates;
    l.types = std::move(census.types);
    l.nodes = std::move(census.nodes);
  });
  for (const CachingTopicListing& ct : ListCachingTopics()) {
    for (CacheListing& l : out) {
      if (l.id != ct.cache_id) continue;
      l.caching_topics.push_back(ct.output);
      l.updates_published += ct.stats.updates_published;
    }
  }
  return out;
}

std::size_t LiveTopicCount() {
  return bus_internal::TopicRegistry::Get().Count();
}

std::size_t LiveSubscriptionCount() {
  return bus_internal::SubscriptionRegistry::Get().Count();
}

std::size_t LiveRouterCount() {
  return bus_internal::RouterRegistry::Get().Count();
}

std::size_t LiveCacheCount() {
  return bus_internal::CacheRegistry::Get().Count();
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

// The sections below are left out when they would be empty: most programs have no router or
// cache, and the listing should stay as short as the bus is simple.
void AppendRouters(std::string& out) {
  const std::vector<MessageRouterStats> routers = ListRouters();
  if (routers.empty()) return;
  out += '\n';
  char line[512];
  std::snprintf(line, sizeof line, "%-40s %-24s %10s %10s %10s %10s %8s\n", "router", "topic",
                "routed", "cache", "default", "unrouted", "failed");
  out += line;
  for (const MessageRouterStats& r : routers) {
    std::snprintf(line, sizeof line,
                  "%-40s %-24s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %8" PRIu64
                  "\n",
                  r.subscription.id.c_str(), r.subscription.topic.c_str(), r.routed, r.cache_routed,
                  r.defaulted, r.unrouted, r.failed);
    out += line;
    for (const RouteStats& route : r.routes) {
      std::snprintf(line, sizeof line,
                    "  route %-8s %-46s %10" PRIu64 " calls %8" PRIu64 " failed\n",
                    RouteKindName(route.kind), route.name.c_str(), route.calls, route.failed);
      out += line;
    }
  }
}

void AppendCaches(std::string& out) {
  const std::vector<CacheListing> caches = ListCaches();
  if (caches.empty()) return;
  out += '\n';
  char line[512];
  std::snprintf(line, sizeof line, "%-12s %8s %10s %10s %10s %10s %8s %8s  %s\n", "cache",
                "entries", "puts", "clears", "aggregates", "updates", "agg-fail", "held-cp",
                "caching topics");
  out += line;
  for (const CacheListing& c : caches) {
    std::string feeds;
    for (const std::string& t : c.caching_topics) feeds += (feeds.empty() ? "" : " ") + t;
    const std::string name = "cache-" + std::to_string(c.id);
    std::snprintf(line, sizeof line,
                  "%-12s %8zu %10" PRIu64 " %10" PRIu64 " %10zu %10" PRIu64 " %8" PRIu64
                  " %8" PRIu64 "  %s\n",
                  name.c_str(), c.stats.entries, c.stats.puts, c.stats.clears, c.aggregates,
                  c.updates_published, c.stats.aggregate_failures, c.stats.held_entry_copies,
                  feeds.c_str());
    out += line;
    for (const CacheTypeCount& t : c.types) {
      std::snprintf(line, sizeof line,
                    "  type %-40s %8zu entries %8zu local %8zu foreign %8zu aggregates\n",
                    t.type.c_str(), t.entries, t.local, t.foreign, t.aggregates);
      out += line;
    }
    for (const CacheNodeCount& n : c.nodes) {
      std::snprintf(line, sizeof line, "  node %-17s %-6s %8zu snapshots\n",
                    n.node.ToString().c_str(), n.local ? "local" : "", n.snapshots);
      out += line;
    }
  }
  const std::vector<CachingTopicListing> caching_topics = ListCachingTopics();
  if (caching_topics.empty()) return;
  out += '\n';
  std::snprintf(line, sizeof line, "%-40s %-24s %-12s %8s %8s %8s %8s %10s\n", "caching topic",
                "original", "cache", "cached", "cleared", "skipped", "id-fail", "updates");
  out += line;
  for (const CachingTopicListing& ct : caching_topics) {
    const std::string cache = "cache-" + std::to_string(ct.cache_id);
    std::snprintf(
        line, sizeof line,
        "%-40s %-24s %-12s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %10" PRIu64 "\n",
        ct.output.c_str(), ct.original.c_str(), cache.c_str(), ct.stats.cached, ct.stats.cleared,
        ct.stats.not_cacheable, ct.stats.id_failures, ct.stats.updates_published);
    out += line;
  }
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
  AppendRouters(out);
  AppendCaches(out);
  return out;
}

}  // namespace plexus
