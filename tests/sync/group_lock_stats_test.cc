// ListGroupLocks and LiveGroupLockCount: the live groups with their holders, waiters and
// chains, as an operator's console shows them; groups leave the listing when they die; and
// listing races creation, locking and destruction safely.

#include "plexus/sync/group_lock_stats.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/mutex.h"

namespace plexus {
namespace {

const GroupLockInfo* Find(const std::vector<GroupLockInfo>& list, const GroupLock& group) {
  for (const GroupLockInfo& info : list) {
    if (info.address == &group) return &info;
  }
  return nullptr;
}

TEST(GroupLockStats, ListsALiveGroupWithWhereItWasCreated) {
  const std::size_t before = LiveGroupLockCount();
  // clang-format off
  const int line = __LINE__; Ref<GroupLock> group = GroupLock::Create();
  // clang-format on
  EXPECT_EQ(LiveGroupLockCount(), before + 1);
  const std::vector<GroupLockInfo> list = ListGroupLocks();
  const GroupLockInfo* info = Find(list, *group);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->created_at.line(), static_cast<unsigned>(line));
  EXPECT_EQ(info->references, 1u);
  EXPECT_EQ(info->waiters, 0u);
  EXPECT_FALSE(info->locked);
  EXPECT_EQ(info->holder, 0u);
  EXPECT_TRUE(info->chain.empty());
  EXPECT_TRUE(info->lock_class.empty());
  // The listing let go of its pin.
  EXPECT_EQ(group->WaiterCount(), 0u);
  const void* address = group.get();
  group.Reset();
  EXPECT_EQ(LiveGroupLockCount(), before);
  for (const GroupLockInfo& listed : ListGroupLocks()) EXPECT_NE(listed.address, address);
}

TEST(GroupLockStats, ShowsTheHolderTheChainAndTheClass) {
  static LockClass kDialog("stats.dialog");
  Ref<GroupLock> group = GroupLock::Create({.lock_class = &kDialog});
  Ref<GroupLock> inner = GroupLock::Create();
  Mutex before_own;
  std::mutex after_own;
  group->Chain(before_own, -1);
  group->Chain(after_own, 2);
  group->Chain(*inner, 1);
  group->AddRef();
  group->Acquire();
  const std::vector<GroupLockInfo> list = ListGroupLocks();
  group->Release();
  group->DecRef();
  // The snapshot was taken while the group was held.
  const GroupLockInfo* info = Find(list, *group);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->lock_class, "stats.dialog");
  EXPECT_EQ(info->references, 2u);
  EXPECT_TRUE(info->locked);
  EXPECT_EQ(info->holder, CurrentThreadToken());
  ASSERT_EQ(info->chain.size(), 3u);
  EXPECT_EQ(info->chain[0].lock, &before_own);
  EXPECT_EQ(info->chain[0].position, -1);
  EXPECT_EQ(info->chain[1].lock, inner.get());
  EXPECT_TRUE(info->chain[1].is_group_lock);
  EXPECT_EQ(info->chain[2].lock, &after_own);
  EXPECT_FALSE(info->chain[2].is_group_lock);
  // The chained group is alive too, and held through the chain.
  const GroupLockInfo* chained = Find(list, *inner);
  ASSERT_NE(chained, nullptr);
  EXPECT_TRUE(chained->locked);
  group->Unchain(before_own);
  group->Unchain(after_own);
  group->Unchain(*inner);
}

TEST(GroupLockStats, DestroyedGroupsAreNotListed) {
  Ref<GroupLock> group = GroupLock::Create();
  group->Destroy();
  for (const GroupLockInfo& listed : ListGroupLocks()) EXPECT_NE(listed.address, group.get());
}

TEST(GroupLockStats, ListingRacesCreationLockingAndDestruction) {
  constexpr int kThreads = 3;
  std::atomic<bool> stop{false};
  std::atomic<int> destroyed{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        Ref<GroupLock> group =
            GroupLock::Create({.member = &destroyed, .handler = [](void* member) {
                                 static_cast<std::atomic<int>*>(member)->fetch_add(1);
                               }});
        Ref<GroupLock> chained = GroupLock::Create();
        group->Chain(*chained, 1);
        group->Acquire();
        group->Release();
        // Dropped here, possibly while a listing holds its pin: the listing then destroys it.
      }
    });
  }
  // List until the workers have been through many lives of their groups, so listings met
  // groups being created, locked and destroyed.
  int listings = 0;
  EXPECT_TRUE(plexus_test::WaitUntil([&] {
    (void)ListGroupLocks();
    return ++listings >= 300 && destroyed.load() >= 300;
  }));
  stop.store(true);
  for (std::thread& w : workers) w.join();
}

}  // namespace
}  // namespace plexus
