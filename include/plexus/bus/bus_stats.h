// -----------------------------------------------------------------------------
// plexus/bus/bus_stats.h
// -----------------------------------------------------------------------------
//
// Introspection of the whole bus, as Asterisk's "stasis show topics" and "stasis statistics"
// CLI: snapshots of every live topic, subscription, message router, cache and caching topic,
// readable while the bus runs. Each listing copies the counters under a short registry lock; it
// never waits on a publisher or a callback.
//
// What a cache holds (ListCaches: entries per type and per node, aggregates) is its
// Cache::Census: one pass over the entries, shard by shard, counting what each shard held when it
// was read (not one instant of the whole cache), holding no entry, so a listing never turns a
// later write in place into a copy.
//
// A topic's `published` (TopicStats) counts what was published on the topic itself, not what
// arrived through a forward (`forwarded_in`), and that includes the subscription change
// notices: each Subscribe and each Unsubscribe on the topic publishes one, whether or not
// anything listens for it (as Asterisk's topic statistics count subscription changes among the
// messages published to the topic). A topic with S subscriptions made and U ended on it and M
// messages published shows published = M + S + U.
//
// Thread safety: thread-safe.

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "plexus/bus/cache.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/message_router.h"
#include "plexus/bus/node_id.h"
#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"

namespace plexus {

// One live cache.
struct CacheListing {
  std::uint64_t id = 0;  // process-unique, in creation order: shown as "cache-<id>"
  CacheStats stats;
  std::size_t aggregates = 0;
  std::vector<CacheTypeCount> types;  // by type name
  std::vector<CacheNodeCount> nodes;  // the local node first, then by node id
  // The output topics of the live caching topics that fill the cache, and the cache-update
  // messages they published.
  std::vector<std::string> caching_topics;
  std::uint64_t updates_published = 0;
};

// One live caching topic.
struct CachingTopicListing {
  std::string output;          // the topic its cache updates go to
  std::string original;        // the topic it caches
  std::uint64_t cache_id = 0;  // its cache's CacheListing::id
  bool subscribed = false;
  CachingTopicStats stats;
};

std::vector<TopicStats> ListTopics();
std::vector<SubscriptionStats> ListSubscriptions();
// Every live router with its routes (RouteStats: kind, name, calls, failures) and its
// routed/cache-routed/defaulted/unrouted counters; `subscription` is its subscription's entry of
// ListSubscriptions (only id and topic if the subscription went in between).
std::vector<MessageRouterStats> ListRouters();
std::vector<CacheListing> ListCaches();
std::vector<CachingTopicListing> ListCachingTopics();
std::size_t LiveTopicCount();
std::size_t LiveSubscriptionCount();
std::size_t LiveRouterCount();
std::size_t LiveCacheCount();
// Every listing as text tables, for a log or a console.
std::string BusStatsText();

}  // namespace plexus
