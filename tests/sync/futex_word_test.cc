// FutexWord, the lock word under plexus's futex mutexes: TryLock on a free and a held word, a
// locker waiting for the unlock, and mutual exclusion under contention, where waiters go
// through the spin and the futex sleep.
#include "plexus/sync/internal/futex_word.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

using plexus::sync_internal::FutexWord;

TEST(FutexWord, TryLockTakesAFreeWordOnly) {
  FutexWord word;
  EXPECT_TRUE(word.TryLock());
  EXPECT_FALSE(word.TryLock()) << "not recursive";
  bool other_got_it = true;
  std::thread([&] { other_got_it = word.TryLock(); }).join();
  EXPECT_FALSE(other_got_it);
  word.Unlock();
  std::thread([&] {
    other_got_it = word.TryLock();
    if (other_got_it) word.Unlock();
  }).join();
  EXPECT_TRUE(other_got_it) << "released";
  word.Lock();
  word.Unlock();
}

TEST(FutexWord, ALockerWaitsForTheUnlock) {
  FutexWord word;
  std::atomic<int> stage{0};
  word.Lock();
  std::thread other([&] {
    stage.store(1);
    word.Lock();  // spins, then sleeps until the main thread's unlock
    stage.store(2);
    word.Unlock();
  });
  while (stage.load() != 1) std::this_thread::yield();
  EXPECT_EQ(stage.load(), 1) << "held: the other thread cannot be past Lock";
  word.Unlock();
  other.join();
  EXPECT_EQ(stage.load(), 2);
  EXPECT_TRUE(word.TryLock()) << "the waiter's unlock freed the word, contended mark and all";
  word.Unlock();
}

// Threads take the word many times at once, some with TryLock: no increment is lost and no two
// threads are inside at once. With more threads than cores, waiters spin out and sleep on the
// futex, and every release that may have a sleeper wakes one.
TEST(FutexWord, StressExcludesUnderContention) {
  FutexWord word;
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
          while (!word.TryLock()) std::this_thread::yield();
        } else {
          word.Lock();
        }
        if (inside.fetch_add(1) != 0) overlap.store(true);
        ++counter;
        inside.fetch_sub(1);
        word.Unlock();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(counter, std::uint64_t{kThreads} * kRounds);
}

}  // namespace
