// A group whose chain is exactly one standard mutex: acquire and release take and let go of it
// in straight-line code through its native handle. These tests hold that path to the same
// contract as the general walk: the mutex is held exactly while the group is, at every
// recursion level, across chain changes, replacement and lock-order validation.

#include <atomic>
#include <latch>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/core/config.h"
#include "plexus/core/ref.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/lock_order.h"

namespace plexus {
namespace {

using plexus_test::WaitUntil;

// Whether another thread can take `lock` right now (it lets go at once if it can).
template <class L>
bool OtherThreadCanTryLock(L& lock) {
  bool got = false;
  std::thread([&] {
    if (lock.try_lock()) {
      got = true;
      lock.unlock();
    }
  }).join();
  return got;
}

// Another thread holds `lock` until Let() or destruction.
class BusyMutex {
 public:
  explicit BusyMutex(std::mutex& lock)
      : thread_([this, &lock] {
          std::lock_guard hold(lock);
          taken_.count_down();
          done_.wait();
        }) {
    taken_.wait();
  }
  ~BusyMutex() { Let(); }
  BusyMutex(const BusyMutex&) = delete;
  BusyMutex& operator=(const BusyMutex&) = delete;
  void Let() {
    if (!thread_.joinable()) return;
    done_.count_down();
    thread_.join();
  }

 private:
  std::latch taken_{1};
  std::latch done_{1};
  std::thread thread_;
};

class ScopedLockOrderValidation {
 public:
  ScopedLockOrderValidation() {
    ResetLockOrderState();
    EnableLockOrderValidation(true);
  }
  ~ScopedLockOrderValidation() {
    EnableLockOrderValidation(false);
    ResetLockOrderState();
  }
  ScopedLockOrderValidation(const ScopedLockOrderValidation&) = delete;
  ScopedLockOrderValidation& operator=(const ScopedLockOrderValidation&) = delete;
};

class GroupLockSoleChain : public ::testing::TestWithParam<int> {};

// Position -1 (before the own lock: tried while the own lock is held) and +1 (after it: taken
// in order).
INSTANTIATE_TEST_SUITE_P(Positions, GroupLockSoleChain, ::testing::Values(-1, 1));

TEST_P(GroupLockSoleChain, TheMutexIsHeldExactlyWhileTheGroupIs) {
  std::mutex external;
  Ref<GroupLock> group = GroupLock::Create();
  group->Chain(external, GetParam());
  for (int round = 0; round < 3; ++round) {
    group->Acquire();
    EXPECT_FALSE(OtherThreadCanTryLock(external));
    EXPECT_EQ(group->WaiterCount(), 0u);  // the uncontended path never registers
    EXPECT_EQ(group->Release(), Liveness::kAlive);
    EXPECT_TRUE(OtherThreadCanTryLock(external));
  }
  EXPECT_TRUE(group->Unchain(external));
}

TEST_P(GroupLockSoleChain, ARecursiveMutexIsRetakenAtEveryLevel) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  std::recursive_mutex external;
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(external, GetParam());
  g.Acquire();
  g.Acquire();
  ASSERT_TRUE(g.TryAcquire());
  EXPECT_EQ(g.HoldCount(), 3u);
  for (int level = 3; level > 0; --level) {
    EXPECT_FALSE(OtherThreadCanTryLock(external)) << "level " << level;
    (void)g.Release();
  }
  EXPECT_EQ(g.HoldCount(), 0u);
  EXPECT_TRUE(OtherThreadCanTryLock(external));
  // Taken first on its own, then again through the chain (external -> group, in order).
  {
    std::lock_guard outer(external);
    std::lock_guard inner(g);
    EXPECT_EQ(g.HoldCount(), 1u);
  }
  EXPECT_TRUE(OtherThreadCanTryLock(external));
}

TEST_P(GroupLockSoleChain, ChainChangesWhileUnheldSwitchBetweenTheSoleLockAndTheWalk) {
  std::mutex first;
  std::mutex second;
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(first, GetParam());
  const auto cycle = [&](bool first_chained, bool second_chained) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    g.Acquire();
    EXPECT_EQ(OtherThreadCanTryLock(first), !first_chained);
    EXPECT_EQ(OtherThreadCanTryLock(second), !second_chained);
    (void)g.Release();
    EXPECT_TRUE(OtherThreadCanTryLock(first));
    EXPECT_TRUE(OtherThreadCanTryLock(second));
  };
  cycle(true, false);
  g.Chain(second, 2);  // two locks: the general walk (first, then second, at either position)
  cycle(true, true);
  EXPECT_TRUE(g.Unchain(second));  // one again
  cycle(true, false);
  EXPECT_TRUE(g.Unchain(first));
  EXPECT_EQ(g.ChainLength(), 0u);
  cycle(false, false);
  g.Chain(second, GetParam());  // a different sole lock
  cycle(false, true);
}

// Chain and Unchain acquire the group themselves, so while it is held they take or let go of
// the lock at two levels: the locks must be recursive.
TEST_P(GroupLockSoleChain, ChainChangesWhileHeldAreBalancedByTheRelease) {
  std::recursive_mutex first;
  std::recursive_mutex second;
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(first, GetParam());
  // Taken by the sole path, released by the walk over two.
  g.Acquire();
  g.Chain(second, 2);
  EXPECT_FALSE(OtherThreadCanTryLock(second));
  (void)g.Release();
  EXPECT_TRUE(OtherThreadCanTryLock(first));
  EXPECT_TRUE(OtherThreadCanTryLock(second));
  // Taken by the walk over two, released by the sole path.
  g.Acquire();
  EXPECT_TRUE(g.Unchain(second));
  EXPECT_TRUE(OtherThreadCanTryLock(second));
  EXPECT_FALSE(OtherThreadCanTryLock(first));
  (void)g.Release();
  EXPECT_TRUE(OtherThreadCanTryLock(first));
  // The sole lock unchained while held: the release lets go of the own lock only.
  g.Acquire();
  EXPECT_TRUE(g.Unchain(first));
  EXPECT_TRUE(OtherThreadCanTryLock(first));
  (void)g.Release();
  EXPECT_TRUE(OtherThreadCanTryLock(first));
  EXPECT_EQ(g.HoldCount(), 0u);
}

TEST_P(GroupLockSoleChain, AReplacementTakesOverTheSoleLock) {
  std::mutex external;
  Ref<GroupLock> old_group = GroupLock::Create();
  Ref<GroupLock> replacement = GroupLock::Create();
  old_group->Chain(external, GetParam());
  EXPECT_EQ(old_group->ReplaceWith(*replacement), Liveness::kGone);
  EXPECT_EQ(replacement->ChainLength(), 1u);
  for (GroupLock* g : {old_group.get(), replacement.get()}) {
    g->Acquire();  // the old group forwards to the replacement
    EXPECT_TRUE(replacement->HeldByCurrentThread());
    EXPECT_FALSE(OtherThreadCanTryLock(external));
    (void)g->Release();
    EXPECT_TRUE(OtherThreadCanTryLock(external));
  }
  EXPECT_TRUE(replacement->Unchain(external));
}

// While the mutex is held by someone else, the uncontended path lets go of the own lock and
// the acquisition waits in order, as a registered waiter.
TEST(GroupLockSoleChainBusy, ABusyMutexChainedBeforeTheOwnLockIsWaitedForInOrder) {
  std::mutex external;
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(external, -1);
  std::optional<BusyMutex> busy(std::in_place, external);
  std::atomic<bool> acquired{false};
  std::thread walker([&] {
    g.Acquire();
    acquired.store(true);
    (void)g.Release();
  });
  WaitUntil([&] { return g.WaiterCount() == 1u; });
  EXPECT_FALSE(acquired.load());
  busy.reset();
  walker.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_EQ(g.WaiterCount(), 0u);
  EXPECT_TRUE(OtherThreadCanTryLock(external));
}

// The validator sees the chained mutex when validation is on, and a hold taken while it was
// off is released cleanly after it was switched on.
TEST(GroupLockSoleChainValidation, TheChainedMutexIsValidatedAndPopped) {
  static LockClass external_class("test.sole_chain.external");
  std::mutex external;
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(external, -1, external_class);
  g.Acquire();  // validation off: the straight-line path
  {
    ScopedLockOrderValidation validation;
    (void)g.Release();
    EXPECT_FALSE(LockOrderHeldByCurrentThread(&external));
    EXPECT_TRUE(OtherThreadCanTryLock(external));
    g.Acquire();
    EXPECT_TRUE(LockOrderHeldByCurrentThread(&external));
    EXPECT_TRUE(LockOrderHeldByCurrentThread(&g));
    (void)g.Release();
    EXPECT_FALSE(LockOrderHeldByCurrentThread(&external));
    EXPECT_FALSE(LockOrderHeldByCurrentThread(&g));
  }
  g.Acquire();
  EXPECT_FALSE(OtherThreadCanTryLock(external));
  (void)g.Release();
  EXPECT_TRUE(OtherThreadCanTryLock(external));
}

// A sole chained lock that is not a standard mutex (another group) takes the general walk.
TEST(GroupLockSoleChainOther, ASoleChainedGroupIsTakenAndLetGo) {
  Ref<GroupLock> outer = GroupLock::Create();
  Ref<GroupLock> inner = GroupLock::Create();
  outer->Chain(*inner, -1);
  outer->Acquire();
  EXPECT_TRUE(inner->HeldByCurrentThread());
  (void)outer->Release();
  EXPECT_FALSE(inner->HeldByCurrentThread());
  EXPECT_TRUE(outer->Unchain(*inner));
}

}  // namespace
}  // namespace plexus
