// The live-group registry and its listing. The registry is sharded by address so that
// groups created and freed on many threads rarely meet on one lock; each shard is an
// intrusive list, so registering allocates nothing.

#include "plexus/sync/group_lock_stats.h"

#include <array>
#include <cstdint>
#include <functional>

#include "group_lock_registry.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/mutex.h"

namespace plexus {
namespace sync_internal {
namespace {

constexpr std::size_t kShards = 16;

struct Shard {
  AnnotatedMutex mu;
  GroupLock* head PLEXUS_GUARDED_BY(mu) = nullptr;
  std::size_t count PLEXUS_GUARDED_BY(mu) = 0;
};

// Never destroyed: groups may be freed by threads still running during static destruction.
std::array<Shard, kShards>& Shards() {
  static auto* shards = new std::array<Shard, kShards>();
  return *shards;
}

Shard& ShardOf(const GroupLock* group) {
  // Allocations are at least 16-byte aligned; the bits above carry the entropy.
  const auto bits = reinterpret_cast<std::uintptr_t>(group) >> 6;
  return Shards()[(bits ^ (bits >> 7)) % kShards];
}

}  // namespace

void GroupLockRegistryAccess::Register(GroupLock& group) {
  Shard& shard = ShardOf(&group);
  MutexLock lock(shard.mu);
  group.registry_next_ = shard.head;
  if (shard.head != nullptr) shard.head->registry_prev_ = &group;
  shard.head = &group;
  ++shard.count;
}

void GroupLockRegistryAccess::Unregister(GroupLock& group) {
  Shard& shard = ShardOf(&group);
  MutexLock lock(shard.mu);
  if (group.registry_prev_ != nullptr) {
    group.registry_prev_->registry_next_ = group.registry_next_;
  } else {
    shard.head = group.registry_next_;
  }
  if (group.registry_next_ != nullptr) group.registry_next_->registry_prev_ = group.registry_prev_;
  --shard.count;
}

GroupLock* GroupLockRegistryAccess::Next(const GroupLock& group) {
  return group.registry_next_;
}

bool GroupLockRegistryAccess::TryPin(GroupLock& group) {
  std::uint64_t w = group.word_.load(std::memory_order_relaxed);
  do {
    if ((w & GroupLock::kDestroyed) != 0 || w < GroupLock::kRef) return false;
    if (group.replaced_by_.load(std::memory_order_relaxed) != nullptr) return false;
  } while (!group.word_.compare_exchange_weak(w, w + GroupLock::kWaiter, std::memory_order_seq_cst,
                                              std::memory_order_relaxed));
  return true;
}

GroupLockInfo GroupLockRegistryAccess::Read(const GroupLock& group) {
  GroupLockInfo info;
  info.address = &group;
  info.created_at = group.class_.site;
  if (group.class_.named != nullptr) info.lock_class = group.class_.named->Name();
  const std::uint64_t w = group.word_.load(std::memory_order_seq_cst);
  info.references = static_cast<std::uint32_t>(w >> 32);
  const auto waiters =
      static_cast<std::uint32_t>((w & GroupLock::kWaiterMask) / GroupLock::kWaiter);
  info.waiters = waiters > 0 ? waiters - 1 : 0;  // not the listing's own pin
  info.locked = (w & GroupLock::kLocked) != 0;
  info.holder = info.locked ? group.owner_.load(std::memory_order_relaxed) : 0;
  info.destroy_handlers = group.HandlerCount();
  if (const ChainSnapshot* chain = group.chain_.load(std::memory_order_seq_cst)) {
    info.chain.reserve(chain->entries.size());
    for (const ChainEntry& entry : chain->entries) {
      info.chain.push_back(
          ChainedLockInfo{entry.lock, entry.position, entry.ops == GroupLockChainedOps()});
    }
  }
  return info;
}

}  // namespace sync_internal

std::vector<GroupLockInfo> ListGroupLocks() {
  using Access = sync_internal::GroupLockRegistryAccess;
  std::vector<GroupLockInfo> out;
  std::vector<GroupLock*> pinned;
  for (sync_internal::Shard& shard : sync_internal::Shards()) {
    pinned.clear();
    {
      MutexLock lock(shard.mu);
      pinned.reserve(shard.count);
      for (GroupLock* group = shard.head; group != nullptr; group = Access::Next(*group)) {
        if (Access::TryPin(*group)) pinned.push_back(group);
      }
    }
    // Read and let go with no registry lock held: unpinning may destroy the group, whose
    // destructor takes the shard lock and whose destroy handlers are user code.
    for (GroupLock* group : pinned) {
      out.push_back(Access::Read(*group));
      Access::Unpin(*group);
    }
  }
  return out;
}

std::size_t LiveGroupLockCount() {
  std::size_t total = 0;
  for (sync_internal::Shard& shard : sync_internal::Shards()) {
    MutexLock lock(shard.mu);
    total += shard.count;
  }
  return total;
}

}  // namespace plexus
