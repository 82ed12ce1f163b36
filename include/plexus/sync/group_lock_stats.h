// -----------------------------------------------------------------------------
// plexus/sync/group_lock_stats.h
// -----------------------------------------------------------------------------
//
// Introspection of every live GroupLock, for an operator's console: which groups exist, where
// they were created, who holds them, how many threads wait, and what is chained to them.
//
// Every group registers itself in a sharded registry when it is created and leaves it when its
// memory is freed; a creation or a free costs one uncontended shard lock. A listing pins each
// group the way a waiting thread does (so neither the group nor its chain snapshot can go away
// while it is read) and lets go afterwards; it never waits for a group's lock. A group whose
// last pin is the listing's is destroyed by the listing's thread, as by any last waiter.
//
// Thread safety: thread-safe.

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "plexus/core/source_location.h"
#include "plexus/core/thread_id.h"

namespace plexus {

// One lock chained to a group.
struct ChainedLockInfo {
  const void* lock = nullptr;
  int position = 0;            // <= 0: taken before the group's own lock; > 0: after
  bool is_group_lock = false;  // the chained lock is itself a GroupLock
};

// A snapshot of one live group lock. Groups already destroyed (their memory kept by a
// reference or by reference debugging's quarantine) and groups replaced by another are not
// listed.
struct GroupLockInfo {
  const void* address = nullptr;
  SourceLocation created_at;
  std::string lock_class;  // the LockClass name; empty when filed by creation site
  std::uint32_t references = 0;
  std::uint32_t waiters = 0;  // threads inside Acquire, the listing's own pin excluded
  bool locked = false;
  ThreadToken holder = 0;  // the holding thread's token; 0 when not held
  std::size_t destroy_handlers = 0;
  std::vector<ChainedLockInfo> chain;  // ascending position
};

// Every live group lock, in no particular order.
std::vector<GroupLockInfo> ListGroupLocks();
// How many group locks are alive (created and not yet freed), destroyed-but-referenced
// included; cheaper than ListGroupLocks().size().
std::size_t LiveGroupLockCount();

}  // namespace plexus
