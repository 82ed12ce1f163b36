#include "plexus/ops/snapshot.h"

#include "plexus/bus/bus_stats.h"
#include "plexus/exec/thread_pool.h"

namespace plexus::ops {

OpsSnapshot TakeSnapshot(SnapshotParts parts) {
  OpsSnapshot s;
  s.taken_at = std::chrono::system_clock::now();
  if (Has(parts, SnapshotParts::kTopics)) s.topics = ListTopics();
  if (Has(parts, SnapshotParts::kSubscriptions)) s.subscriptions = ListSubscriptions();
  if (Has(parts, SnapshotParts::kTaskProcessors)) s.task_processors = TaskProcessor::List();
  if (Has(parts, SnapshotParts::kTimers)) s.timer_heaps = ListTimerHeaps();
  if (Has(parts, SnapshotParts::kGroupLocks)) s.group_locks = ListGroupLocks();
  if (Has(parts, SnapshotParts::kLockOrder)) {
    s.recent_lock_order_violations = RecentLockOrderViolations();
  }
  if (Has(parts, SnapshotParts::kCounters)) s.counters = ListCounters();
  s.ref_debugging = RefDebuggingEnabled();
  if (Has(parts, SnapshotParts::kRefs) && s.ref_debugging) s.tracked_objects = LiveTrackedObjects();

  ThreadPool& pool = ThreadPool::Shared();
  s.shared_pool = PoolSnapshot{pool.Name(), pool.ActiveCount(), pool.IdleCount(), pool.QueueSize()};
  s.live_topics = LiveTopicCount();
  s.live_subscriptions = LiveSubscriptionCount();
  s.live_task_processors = TaskProcessor::LiveCount();
  s.live_group_locks = LiveGroupLockCount();
  s.queues_in_alert = TaskProcessorProcessAlertCount();
  s.lock_order_validation = LockOrderValidationEnabled();
  s.lock_order_violations = LockOrderViolationCount();
  return s;
}

}  // namespace plexus::ops
