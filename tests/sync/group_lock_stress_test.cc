#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/core/config.h"
#include "plexus/core/ref.h"
#include "plexus/sync/group_lock.h"
#include "sync/instrumented_lock.h"

// Stress and race tests for GroupLock. They assert outcomes (destroyed exactly once, after the
// last holder; no lock released by a thread that did not take it), never timings; their real
// strength is running under AddressSanitizer (use after free) and ThreadSanitizer (races).
// Iteration counts shrink under TSan, which is 5-15x slower.

namespace plexus {
namespace {

using plexus_test::InstrumentedLock;

constexpr int Scaled(int n) {
  return kSanitizeThread ? n / 10 : n;
}

// What the destroy handler saw.
struct Lifetime {
  std::atomic<int> destroyed{0};
  std::atomic<int> inside{0};  // threads inside the critical section
  std::atomic<int> inside_at_destroy{-1};
};

void CountDestroy(void* p) {
  auto* life = static_cast<Lifetime*>(p);
  life->inside_at_destroy.store(life->inside.load());
  life->destroyed.fetch_add(1);
}

void CountCall(void* p) {
  static_cast<std::atomic<int>*>(p)->fetch_add(1);
}

// GL18: many threads acquire, release, add_ref and dec_ref while the creator drops the last
// outside reference. The group dies exactly once, after the last holder let go.
TEST(GroupLockStress, GL18_ConcurrentUseWhileTheLastOutsideReferenceIsDropped) {
  constexpr int kThreads = 4;
  const int rounds = Scaled(200);
  const int iterations = Scaled(2'000);
  for (int round = 0; round < rounds; ++round) {
    Lifetime life;
    Ref<GroupLock> outside = GroupLock::Create({.member = &life, .handler = &CountDestroy});
    GroupLock* raw = outside.get();
    std::vector<Ref<GroupLock>> refs(kThreads, outside);  // one reference per worker
    std::atomic<int> gone{0};
    std::atomic<int> overlaps{0};
    std::atomic<int> unexpected{0};
    long counter = 0;  // guarded by the group
    std::latch start(kThreads + 1);
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t, mine = std::move(refs[static_cast<std::size_t>(t)])]()
                               PLEXUS_NO_THREAD_SAFETY_ANALYSIS mutable {
                                 const auto critical = [&] {
                                   if (life.inside.fetch_add(1) != 0) overlaps.fetch_add(1);
                                   ++counter;
                                   life.inside.fetch_sub(1);
                                 };
                                 start.arrive_and_wait();
                                 for (int i = 0; i < iterations; ++i) {
                                   switch ((i + t) % 4) {
                                     case 0:
                                       raw->Acquire();
                                       critical();
                                       if (raw->Release() != Liveness::kAlive)
                                         unexpected.fetch_add(1);
                                       break;
                                     case 1:
                                       if (raw->TryAcquire()) {
                                         critical();
                                         if (raw->Release() != Liveness::kAlive) {
                                           unexpected.fetch_add(1);
                                         }
                                       }
                                       break;
                                     case 2:
                                       raw->AddRef();
                                       if (raw->DecRef() != Liveness::kAlive)
                                         unexpected.fetch_add(1);
                                       break;
                                     case 3:
                                       raw->Acquire();
                                       raw->Acquire();
                                       critical();
                                       (void)raw->Release();
                                       if (raw->Release() != Liveness::kAlive)
                                         unexpected.fetch_add(1);
                                       break;
                                   }
                                 }
                                 if (t % 2 == 0) {
                                   if (mine.Reset() == Liveness::kGone) gone.fetch_add(1);
                                 } else {
                                   // Drop the reference while holding: the release destroys.
                                   raw->Acquire();
                                   critical();
                                   if (mine.Reset() == Liveness::kGone) unexpected.fetch_add(1);
                                   if (raw->Release() == Liveness::kGone) gone.fetch_add(1);
                                 }
                               });
    }
    start.arrive_and_wait();
    if (outside.Reset() == Liveness::kGone) gone.fetch_add(1);
    for (std::thread& w : workers) w.join();
    ASSERT_EQ(gone.load(), 1) << "round " << round;
    ASSERT_EQ(life.destroyed.load(), 1) << "round " << round;
    ASSERT_EQ(life.inside_at_destroy.load(), 0) << "round " << round;
    ASSERT_EQ(overlaps.load(), 0) << "round " << round;
    ASSERT_EQ(unexpected.load(), 0) << "round " << round;
  }
}

// The last outside DecRef races an Acquire by a thread that holds its own reference; that
// thread then drops its reference, alternately after and while holding the lock.
// Contended hand-offs in which waiters outlast their spin and sleep on the parking lot (the
// holder yields its core while holding). A wake-up lost by the release would leave a waiter
// asleep with the lock free and nobody left to wake it: the test would hang.
TEST(GroupLockStress, ParkedWaitersAreAlwaysWoken) {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  constexpr int kThreads = 8;
  const int rounds = Scaled(5000);
  long counter = 0;  // guarded by g
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int r = 0; r < rounds; ++r) {
        std::scoped_lock lock(g);
        ++counter;
        std::this_thread::yield();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::scoped_lock lock(g);
  EXPECT_EQ(counter, static_cast<long>(kThreads) * rounds);
}

TEST(GroupLockStress, LastDecRefRacesAcquire) {
  const int rounds = Scaled(3'000);
  for (int round = 0; round < rounds; ++round) {
    Lifetime life;
    Ref<GroupLock> outside = GroupLock::Create({.member = &life, .handler = &CountDestroy});
    GroupLock* raw = outside.get();
    std::atomic<int> gone{0};
    std::latch start(2);
    const bool drop_while_holding = round % 2 == 1;
    std::thread other([&, mine = outside]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS mutable {
      start.arrive_and_wait();
      raw->Acquire();
      life.inside.fetch_add(1);
      life.inside.fetch_sub(1);
      if (drop_while_holding && mine.Reset() == Liveness::kGone) gone.fetch_add(10);  // never
      if (raw->Release() == Liveness::kGone) gone.fetch_add(1);
      if (mine.Reset() == Liveness::kGone) gone.fetch_add(1);
    });
    start.arrive_and_wait();
    if (outside.Reset() == Liveness::kGone) gone.fetch_add(1);
    other.join();
    ASSERT_EQ(gone.load(), 1) << "round " << round;
    ASSERT_EQ(life.destroyed.load(), 1) << "round " << round;
    ASSERT_EQ(life.inside_at_destroy.load(), 0) << "round " << round;
  }
}

// Destroy handlers registered and removed by threads that hold references, while the other
// references are dropped: a handler added to a live group runs exactly once; a removed one
// never does.
TEST(GroupLockStress, HandlersAddedWhileTheGroupDies) {
  const int rounds = Scaled(2'000);
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> added_calls{0};
    std::atomic<int> removed_calls{0};
    Ref<GroupLock> outside = GroupLock::Create();
    GroupLock* raw = outside.get();
    std::atomic<int> gone{0};
    std::atomic<int> refused{0};
    std::latch start(3);
    std::thread adder([&, mine = outside]() mutable {
      start.arrive_and_wait();
      if (!raw->AddHandler(&added_calls, &CountCall)) refused.fetch_add(1);
      if (mine.Reset() == Liveness::kGone) gone.fetch_add(1);
    });
    std::thread remover([&, mine = outside]() mutable {
      start.arrive_and_wait();
      if (!raw->AddHandler(&removed_calls, &CountCall)) refused.fetch_add(1);
      if (!raw->DelHandler(&removed_calls, &CountCall)) refused.fetch_add(1);
      if (mine.Reset() == Liveness::kGone) gone.fetch_add(1);
    });
    start.arrive_and_wait();
    if (outside.Reset() == Liveness::kGone) gone.fetch_add(1);
    adder.join();
    remover.join();
    ASSERT_EQ(refused.load(), 0) << "round " << round;
    ASSERT_EQ(gone.load(), 1) << "round " << round;
    ASSERT_EQ(added_calls.load(), 1) << "round " << round;
    ASSERT_EQ(removed_calls.load(), 0) << "round " << round;
  }
}

// ReplaceWith while other threads hold references to the old group and keep using them: first
// only reference operations (ReplaceWith requires that nobody holds or waits for the old
// group), then, once it was replaced, locking through the old group, which forwards.
TEST(GroupLockStress, ReplaceWithUnderLoad) {
  constexpr int kThreads = 3;
  const int rounds = Scaled(100);
  const int iterations = Scaled(1'000);
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> old_member{0};
    std::atomic<int> new_member{0};
    InstrumentedLock ext("ext");
    Ref<GroupLock> old_group = GroupLock::Create({.member = &old_member, .handler = &CountCall});
    old_group->Chain(ext, -1);
    Ref<GroupLock> fresh = GroupLock::Create({.member = &new_member, .handler = &CountCall});
    GroupLock* old_raw = old_group.get();
    GroupLock* new_raw = fresh.get();
    std::atomic<bool> replaced{false};
    std::atomic<int> wrong{0};
    std::atomic<int> gone{0};
    long counter = 0;  // guarded by the new group
    std::latch start(kThreads + 1);
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, mine = old_group]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS mutable {
        start.arrive_and_wait();
        int done = 0;
        while (done < iterations) {
          if (!replaced.load(std::memory_order_acquire)) {
            old_raw->AddRef();
            if (old_raw->DecRef() != Liveness::kAlive) wrong.fetch_add(1);
            continue;
          }
          old_raw->Acquire();
          if (!new_raw->HeldByCurrentThread() || !ext.HeldByCurrentThread()) wrong.fetch_add(1);
          ++counter;
          if (old_raw->Release() != Liveness::kAlive) wrong.fetch_add(1);
          if (done % 3 == 0) {
            old_raw->AddRef();
            if (old_raw->DecRef() != Liveness::kAlive) wrong.fetch_add(1);
          }
          ++done;
        }
        if (mine.Reset() == Liveness::kGone) gone.fetch_add(1);
      });
    }
    start.arrive_and_wait();
    if (old_group->ReplaceWith(*fresh) != Liveness::kGone) wrong.fetch_add(1);
    replaced.store(true, std::memory_order_release);
    if (old_group.Reset() == Liveness::kGone) gone.fetch_add(1);
    for (std::thread& w : workers) w.join();
    ASSERT_EQ(wrong.load(), 0) << "round " << round;
    ASSERT_EQ(gone.load(), 0) << "round " << round;  // the new group's own reference remains
    ASSERT_EQ(counter, static_cast<long>(kThreads) * iterations);
    ASSERT_EQ(fresh->RefCount(), 1u) << "round " << round;
    ASSERT_EQ(old_member.load(), 0) << "round " << round;
    ASSERT_EQ(fresh.Reset(), Liveness::kGone) << "round " << round;
    ASSERT_EQ(new_member.load(), 1) << "round " << round;
    ASSERT_EQ(old_member.load(), 1) << "round " << round;
    ASSERT_TRUE(ext.IsFree());
    ASSERT_EQ(ext.foreign_unlocks(), 0);
  }
}

// Fails the test and ends the process if `finished` does not become true within a bound
// that only a hang reaches: a deadlocked thread cannot be joined, and waiting for ctest's
// timeout would hide which test hung.
void ExpectFinishesOrDie(const std::atomic<bool>& finished, const char* what) {
  const auto limit = std::chrono::seconds(kSanitizeThread ? 240 : 60);
  if (plexus_test::WaitUntil([&] { return finished.load(); }, limit)) return;
  ADD_FAILURE() << what << ": not finished after " << limit.count()
                << " s; the threads are deadlocked";
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);
}

// GL20 under load: one thread chains and unchains external locks (with the group held when
// `chain_while_holding`, else without) while others acquire it. Every acquirer holds exactly
// the chained locks while it holds the group, never unlocks a lock it did not take, nothing
// deadlocks, and everything is free at the end.
void ChainAndUnchainRacingAcquirers(bool chain_while_holding) {
  constexpr int kAcquirers = 3;
  const int chain_changes = Scaled(20'000);
  std::array<InstrumentedLock, 3> ext{InstrumentedLock("e-2"), InstrumentedLock("e-1"),
                                      InstrumentedLock("e+1")};
  constexpr std::array<int, 3> kPositions{-2, -1, 1};
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  std::atomic<bool> done{false};
  std::atomic<bool> all_done{false};
  std::atomic<int> mismatches{0};
  std::atomic<int> leftovers{0};
  std::atomic<long> acquisitions{0};
  std::latch start(kAcquirers + 1);

  const auto held_by_me = [&ext] {
    std::size_t n = 0;
    for (const InstrumentedLock& e : ext) n += e.HeldByCurrentThread() ? 1 : 0;
    return n;
  };

  std::vector<std::thread> acquirers;
  for (int t = 0; t < kAcquirers; ++t) {
    acquirers.emplace_back([&, t]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
      start.arrive_and_wait();
      for (long i = 0; !done.load(std::memory_order_relaxed) || i < 100; ++i) {
        bool got = true;
        if ((i + t) % 3 == 0) {
          got = g.TryAcquire();
        } else {
          g.Acquire();
        }
        if (!got) continue;
        // The chain changes only under the group's lock, so it is stable while we hold it.
        if (held_by_me() != g.ChainLength()) mismatches.fetch_add(1);
        if (i % 5 == 0) {
          g.Acquire();  // recursion re-takes every chained lock
          (void)g.Release();
        }
        (void)g.Release();
        if (held_by_me() != 0) leftovers.fetch_add(1);
        acquisitions.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  std::thread chainer([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    std::array<bool, 3> chained{false, false, false};
    start.arrive_and_wait();
    for (int i = 0; i < chain_changes; ++i) {
      const std::size_t k = static_cast<std::size_t>(i * 7 + i / 3) % ext.size();
      if (chain_while_holding) g.Acquire();
      if (chained[k]) {
        if (!g.Unchain(ext[k])) mismatches.fetch_add(1);
      } else {
        g.Chain(ext[k], kPositions[k]);
      }
      chained[k] = !chained[k];
      if (chain_while_holding) {
        if (held_by_me() != g.ChainLength()) mismatches.fetch_add(1);
        (void)g.Release();
      }
      if (held_by_me() != 0) leftovers.fetch_add(1);
    }
    done.store(true);
  });

  std::thread joiner([&] {
    chainer.join();
    for (std::thread& a : acquirers) a.join();
    all_done.store(true);
  });
  ExpectFinishesOrDie(all_done, "chain/unchain racing acquirers");
  joiner.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(leftovers.load(), 0);
  EXPECT_GT(acquisitions.load(), 0);
  for (const InstrumentedLock& e : ext) {
    EXPECT_TRUE(e.IsFree()) << e.name();
    EXPECT_EQ(e.foreign_unlocks(), 0) << e.name();
  }
  EXPECT_EQ(g.WaiterCount(), 0u);
  EXPECT_FALSE(g.HeldByCurrentThread());
}

TEST(GroupLockStress, GL20_ChainAndUnchainRacingAcquirers) {
  ChainAndUnchainRacingAcquirers(/*chain_while_holding=*/false);
}

TEST(GroupLockStress, GL20_ChainAndUnchainWhileHoldingRacingAcquirers) {
  ChainAndUnchainRacingAcquirers(/*chain_while_holding=*/true);
}

// A chain that moves between none, one standard mutex (each of two, before and after the own
// lock) and both, while acquirers take the group and another thread takes the mutexes on their
// own. An acquirer adds to a counter guarded by each mutex chained while it holds the group, and
// the outside thread adds to the same counters under the mutex alone: ThreadSanitizer sees any
// hold in which the group did not really hold a chained mutex (a busy one makes the
// uncontended path fall back to the ordered walk). The tallies match and nothing is left held.
TEST(GroupLockStress, SoleChainedMutexRacingChainChangesAndOutsideUse) {
  constexpr int kAcquirers = 3;
  const int chain_changes = Scaled(20'000);
  // Recursive: the chainer holds the group while Chain and Unchain acquire it again.
  std::array<std::recursive_mutex, 2> ext;
  std::array<long, 2> guarded{0, 0};         // guarded[k] by ext[k]
  std::array<std::atomic<bool>, 2> chained;  // written under the group's lock
  for (std::atomic<bool>& c : chained) c.store(false);
  std::array<std::atomic<long>, 2> tally{0, 0};
  long under_group = 0;  // guarded by the group
  std::atomic<long> acquisitions{0};
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  std::atomic<bool> done{false};
  std::atomic<bool> all_done{false};
  std::latch start(kAcquirers + 2);

  std::vector<std::thread> threads;
  for (int t = 0; t < kAcquirers; ++t) {
    threads.emplace_back([&, t]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
      start.arrive_and_wait();
      for (long i = 0; !done.load(std::memory_order_relaxed) || i < 100; ++i) {
        g.Acquire();
        const bool recurse = (i + t) % 7 == 0;
        if (recurse) g.Acquire();  // every level retakes the chain
        ++under_group;
        for (std::size_t k = 0; k < ext.size(); ++k) {
          if (!chained[k].load(std::memory_order_relaxed)) continue;
          ++guarded[k];
          tally[k].fetch_add(1, std::memory_order_relaxed);
        }
        if (recurse) (void)g.Release();
        (void)g.Release();
        acquisitions.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  threads.emplace_back([&] {
    start.arrive_and_wait();
    for (long i = 0; !done.load(std::memory_order_relaxed); ++i) {
      const std::size_t k = static_cast<std::size_t>(i) % ext.size();
      std::lock_guard hold(ext[k]);
      ++guarded[k];
      tally[k].fetch_add(1, std::memory_order_relaxed);
    }
  });
  threads.emplace_back([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    start.arrive_and_wait();
    for (int i = 0; i < chain_changes; ++i) {
      const std::size_t k = static_cast<std::size_t>(i * 5 + i / 4) % ext.size();
      // ext[0] alternates between before and after the own lock; ext[1] is after it.
      const int position = k == 1 ? 2 : ((i / 2) % 2 == 0 ? -1 : 1);
      std::lock_guard hold(g);
      if (chained[k].load(std::memory_order_relaxed)) {
        (void)g.Unchain(ext[k]);
      } else {
        g.Chain(ext[k], position);
      }
      chained[k].store(!chained[k].load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    {
      std::lock_guard hold(g);
      for (std::size_t k = 0; k < ext.size(); ++k) {
        if (chained[k].load(std::memory_order_relaxed)) (void)g.Unchain(ext[k]);
        chained[k].store(false, std::memory_order_relaxed);
      }
    }
    done.store(true);
  });

  std::thread joiner([&] {
    for (std::thread& t : threads) t.join();
    all_done.store(true);
  });
  ExpectFinishesOrDie(all_done, "sole chained mutex racing chain changes");
  joiner.join();
  EXPECT_EQ(under_group, acquisitions.load());
  for (std::size_t k = 0; k < ext.size(); ++k) {
    EXPECT_EQ(guarded[k], tally[k].load()) << k;
    EXPECT_TRUE(ext[k].try_lock()) << k;  // nothing left held
    ext[k].unlock();
  }
  EXPECT_EQ(g.ChainLength(), 0u);
  EXPECT_EQ(g.WaiterCount(), 0u);
}

}  // namespace
}  // namespace plexus
