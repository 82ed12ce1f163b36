// -----------------------------------------------------------------------------
// plexus/ops/snapshot.h
// -----------------------------------------------------------------------------
//
// OpsSnapshot gathers what the statistics APIs of every layer report (the bus's topics and
// subscriptions, task processors and the shared pool, timer heaps, alerts, group locks,
// lock-order reports, tracked references), and the program's own counters, into one value. The
// operator view renders both its Prometheus page and its JSON from such a value, so the two can
// never disagree with each other or with the listings they were copied from.
//
// Taking a snapshot calls the listings one after another: each listing is consistent in
// itself, the snapshot as a whole is not an atomic cut across layers.
//
// Thread safety: TakeSnapshot is thread-safe; an OpsSnapshot is a plain value.

#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"
#include "plexus/core/ref_debug.h"
#include "plexus/exec/task_processor.h"
#include "plexus/exec/timer_heap.h"
#include "plexus/ops/counter.h"
#include "plexus/sync/group_lock_stats.h"
#include "plexus/sync/lock_order.h"

namespace plexus::ops {

// Which listings a snapshot copies; the counts (live topics, live group locks, alerts, ...)
// are always taken. A bit set, combined with |.
enum class SnapshotParts : unsigned {
  kNone = 0,
  kTopics = 1u << 0,
  kSubscriptions = 1u << 1,
  kTaskProcessors = 1u << 2,
  kTimers = 1u << 3,
  kGroupLocks = 1u << 4,  // every live group lock: costs a walk of all of them
  kLockOrder = 1u << 5,   // the recent lock-order reports
  kRefs = 1u << 6,        // every tracked object with its holders (ref debugging on only)
  kCounters = 1u << 7,    // the program's own counters (plexus/ops/counter.h)
  // What /metrics needs: the listings with counters, not the per-object lock and ref lists.
  kMetrics = kTopics | kSubscriptions | kTaskProcessors | kTimers | kCounters,
  kAll = 0xff,
};
constexpr SnapshotParts operator|(SnapshotParts a, SnapshotParts b) {
  return static_cast<SnapshotParts>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool Has(SnapshotParts set, SnapshotParts part) {
  return (static_cast<unsigned>(set) & static_cast<unsigned>(part)) != 0;
}

// The process-wide pool's state (ThreadPool::Shared()).
struct PoolSnapshot {
  std::string name;
  std::size_t active_threads = 0;
  std::size_t idle_threads = 0;
  std::size_t queued_tasks = 0;
};

struct OpsSnapshot {
  std::chrono::system_clock::time_point taken_at;

  std::vector<TopicStats> topics;
  std::vector<SubscriptionStats> subscriptions;
  std::vector<TaskProcessorStats> task_processors;
  std::vector<TimerHeapStats> timer_heaps;
  std::vector<GroupLockInfo> group_locks;
  std::vector<LockOrderViolation> recent_lock_order_violations;
  std::vector<TrackedObject> tracked_objects;
  std::vector<CounterStats> counters;

  PoolSnapshot shared_pool;
  std::size_t live_topics = 0;
  std::size_t live_subscriptions = 0;
  std::size_t live_task_processors = 0;
  std::size_t live_group_locks = 0;
  std::size_t queues_in_alert = 0;  // task processors and subscriptions above high water
  bool lock_order_validation = false;
  std::uint64_t lock_order_violations = 0;
  bool ref_debugging = false;
};

OpsSnapshot TakeSnapshot(SnapshotParts parts = SnapshotParts::kAll);

}  // namespace plexus::ops
