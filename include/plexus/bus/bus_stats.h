// -----------------------------------------------------------------------------
// plexus/bus/bus_stats.h
// -----------------------------------------------------------------------------
//
// Introspection of the whole bus, as Asterisk's "stasis show topics" and "stasis statistics"
// CLI: snapshots of every live topic and subscription, readable while the bus runs. Each
// listing copies the counters under a short registry lock; it never waits on a publisher or a
// callback.
//
// Thread safety: thread-safe.

#pragma once

#include <string>
#include <vector>

#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"

namespace plexus {

std::vector<TopicStats> ListTopics();
std::vector<SubscriptionStats> ListSubscriptions();
std::size_t LiveTopicCount();
std::size_t LiveSubscriptionCount();
// Both listings as text tables, for a log or a console.
std::string BusStatsText();

}  // namespace plexus
