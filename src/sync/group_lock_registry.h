// The registry of live group locks behind ListGroupLocks (plexus/sync/group_lock_stats.h).
// Private to the sync library.

#pragma once

#include "plexus/sync/group_lock_stats.h"

namespace plexus {

class GroupLock;

namespace sync_internal {

// GroupLock befriends this, so the listing can read the lock word and pin a group the way a
// waiter does without widening GroupLock's public interface.
struct GroupLockRegistryAccess {
  static void Register(GroupLock& group);
  static void Unregister(GroupLock& group);
  static GroupLock* Next(const GroupLock& group);
  // Called with the group's shard lock held, which keeps the memory alive: registers as a
  // waiter unless the group is dying, destroyed or replaced. Never finishes a group (that
  // would re-enter the shard lock through the destructor).
  static bool TryPin(GroupLock& group);
  // The pin is a waiter registration, which keeps the group and its current chain snapshot
  // alive (retired snapshots are freed only when no waiter is counted).
  static GroupLockInfo Read(const GroupLock& group);
  static void Unpin(const GroupLock& group);
};

}  // namespace sync_internal
}  // namespace plexus
