// -----------------------------------------------------------------------------
// plexus/ops/api_json.h
// -----------------------------------------------------------------------------
//
// The operator view's JSON documents, one per endpoint, built from an OpsSnapshot with
// nlohmann-json. Counters keep the names of the statistics structs' fields, so a reader of
// the JSON can look a field up in the header that defines it. Pointers (group locks, chained
// locks, tracked objects, thread tokens) are written as "0x..." strings: identities for
// matching entries across documents, not addresses to use.
//
// Thread safety: pure functions of their argument.

#pragma once

#include <nlohmann/json.hpp>

#include "plexus/ops/snapshot.h"

namespace plexus::ops {

nlohmann::json TopicsJson(const OpsSnapshot& snapshot);          // /api/topics
nlohmann::json SubscriptionsJson(const OpsSnapshot& snapshot);   // /api/subscriptions
nlohmann::json TaskProcessorsJson(const OpsSnapshot& snapshot);  // /api/taskprocessors
nlohmann::json TimersJson(const OpsSnapshot& snapshot);          // /api/timers
nlohmann::json LocksJson(const OpsSnapshot& snapshot);           // /api/locks
nlohmann::json RefsJson(const OpsSnapshot& snapshot);            // /api/refs
nlohmann::json CountersJson(const OpsSnapshot& snapshot);        // /api/counters

}  // namespace plexus::ops
