// FutexRecursiveMutex, the lock inside plexus::RecursiveMutex: recursion by its owner,
// exclusion of other threads (try_lock and lock), and mutual exclusion under contention, where
// waiters go through the spin and the futex sleep.
#include "plexus/sync/internal/futex_recursive_mutex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"

namespace {

using plexus::sync_internal::FutexRecursiveMutex;

TEST(FutexRecursiveMutex, TheOwnerLocksAgainAndUnlocksAsOften) {
  FutexRecursiveMutex mu;
  mu.lock();
  mu.lock();
  EXPECT_TRUE(mu.try_lock());
  mu.unlock();
  mu.unlock();
  bool other_got_it = true;
  std::thread([&] { other_got_it = mu.try_lock(); }).join();
  EXPECT_FALSE(other_got_it) << "still held once";
  mu.unlock();
  std::thread([&] {
    other_got_it = mu.try_lock();
    if (other_got_it) mu.unlock();
  }).join();
  EXPECT_TRUE(other_got_it) << "released";
}

TEST(FutexRecursiveMutex, ALockerWaitsForTheOwnersLastUnlock) {
  FutexRecursiveMutex mu;
  std::atomic<int> stage{0};
  mu.lock();
  mu.lock();
  std::thread other([&] {
    stage.store(1);
    mu.lock();  // spins, then sleeps until the main thread's last unlock
    stage.store(2);
    mu.unlock();
  });
  while (stage.load() != 1) std::this_thread::yield();
  mu.unlock();
  EXPECT_EQ(stage.load(), 1) << "one unlock of two does not let go";
  mu.unlock();
  other.join();
  EXPECT_EQ(stage.load(), 2);
  EXPECT_TRUE(mu.try_lock());
  mu.unlock();
}

TEST(FutexRecursiveMutex, IsALockableForTheStandardGuards) {
  FutexRecursiveMutex mu;
  {
    std::scoped_lock lock(mu);
    std::unique_lock again(mu);
    EXPECT_TRUE(again.owns_lock());
  }
  EXPECT_TRUE(mu.try_lock());
  mu.unlock();
}

// Threads take the lock, nested, many times at once: no increment is lost and no two threads
// are inside at once. With more threads than cores, waiters spin out and sleep on the futex.
TEST(FutexRecursiveMutex, StressExcludesUnderContention) {
  FutexRecursiveMutex mu;
  constexpr int kThreads = 6;
  constexpr int kRounds = 20000;
  std::uint64_t counter = 0;
  std::atomic<int> inside{0};
  std::atomic<bool> overlap{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        if ((i + t) % 3 == 0) {
          while (!mu.try_lock()) std::this_thread::yield();
        } else {
          mu.lock();
        }
        if (inside.fetch_add(1) != 0) overlap.store(true);
        mu.lock();  // nested
        ++counter;
        mu.unlock();
        inside.fetch_sub(1);
        mu.unlock();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(counter, std::uint64_t{kThreads} * kRounds);
}

// Recursion is what clang's analysis cannot follow (it sees a held lock acquired again).
bool LockedTwiceThenOnceExcludesOthers(plexus::RecursiveMutex& mu)
    PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  mu.Acquire();
  mu.Acquire();
  mu.Release();
  bool other_got_it = true;
  std::thread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    other_got_it = mu.TryAcquire();
    if (other_got_it) mu.Release();
  }).join();
  mu.Release();
  return !other_got_it;
}

TEST(FutexRecursiveMutex, RecursiveMutexUsesIt) {
  plexus::RecursiveMutex mu;
  EXPECT_TRUE(LockedTwiceThenOnceExcludesOthers(mu));
  plexus::MutexLock lock(mu);
}

}  // namespace
