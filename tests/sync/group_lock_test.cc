#include "plexus/sync/group_lock.h"

#include <atomic>
#include <latch>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/core/config.h"
#include "plexus/core/misuse.h"
#include "plexus/core/ref.h"
#include "plexus/core/ref_debug.h"
#include "plexus/sync/lock_order.h"
#include "sync/instrumented_lock.h"

namespace plexus {
namespace {

using plexus_test::EventLog;
using plexus_test::InstrumentedLock;
using plexus_test::LogCapture;
using plexus_test::MentionsLocation;
using plexus_test::ScopedMisuseAction;
using plexus_test::ScopedRefDebugging;
using plexus_test::WaitUntil;
using ::testing::ElementsAre;

// A group member: its destroy handler counts calls and, given a log, records its name there.
struct Member {
  std::string name;
  EventLog* log = nullptr;
  std::atomic<int> calls{0};
  std::atomic<int> other_calls{0};
};

void RecordDestroy(void* m) {
  auto* member = static_cast<Member*>(m);
  member->calls.fetch_add(1);
  if (member->log != nullptr) member->log->Add(member->name);
}

void OtherDestroy(void* m) {
  auto* member = static_cast<Member*>(m);
  member->other_calls.fetch_add(1);
  if (member->log != nullptr) member->log->Add("other:" + member->name);
}

// Runs `body` on a new thread and waits for it: for checking what another thread can do.
template <class Body>
void OnOtherThread(Body body) {
  std::thread(body).join();
}

bool OtherThreadCanTryAcquire(GroupLock& g) {
  bool got = false;
  OnOtherThread([&] {
    if (g.TryAcquire()) {
      got = true;
      (void)g.Release();
    }
  });
  return got;
}

template <class L>
bool OtherThreadCanTryLock(L& lock) {
  bool got = false;
  OnOtherThread([&] {
    if (lock.try_lock()) {
      got = true;
      lock.unlock();
    }
  });
  return got;
}

// Lock-order validation switched on for one scope (some tests use its held stacks to see
// whether the group's own lock is held at a given moment).
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

// -----------------------------------------------------------------------------
// GL01 create and destroy
// -----------------------------------------------------------------------------

TEST(GroupLock, GL01_CreateAndDestroy) {
  Member member;
  Ref<GroupLock> group = GroupLock::Create({.member = &member, .handler = &RecordDestroy});
  ASSERT_TRUE(group);
  EXPECT_EQ(group->RefCount(), 1u);  // the creator's reference (PJLIB starts at 0)
  EXPECT_FALSE(group->IsDestroyed());
  EXPECT_EQ(group->HandlerCount(), 1u);
  EXPECT_EQ(member.calls.load(), 0);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_EQ(member.calls.load(), 1);
}

// Unlike PJLIB, registering a handler on a fresh group does not destroy it.
TEST(GroupLock, GL01_HandlerOnAFreshGroupDoesNotDestroyIt) {
  Member member;
  Ref<GroupLock> group = GroupLock::Create();
  EXPECT_TRUE(group->AddHandler(&member, &RecordDestroy));
  EXPECT_FALSE(group->IsDestroyed());
  EXPECT_EQ(member.calls.load(), 0);
  EXPECT_EQ(group->RefCount(), 1u);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_EQ(member.calls.load(), 1);
}

TEST(GroupLock, GL01_BareDecRefOfTheLastReferenceReportsGone) {
  Member member;
  GroupLock* raw = GroupLock::Create({.member = &member, .handler = &RecordDestroy}).Detach();
  raw->AddRef();
  EXPECT_EQ(raw->RefCount(), 2u);
  EXPECT_EQ(raw->DecRef(), Liveness::kAlive);
  EXPECT_EQ(member.calls.load(), 0);
  EXPECT_EQ(raw->DecRef(), Liveness::kGone);
  EXPECT_EQ(member.calls.load(), 1);
}

// -----------------------------------------------------------------------------
// GL02 recursive mutual exclusion
// -----------------------------------------------------------------------------

TEST(GroupLock, GL02_RecursiveMutualExclusion) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  EXPECT_FALSE(g.HeldByCurrentThread());
  EXPECT_EQ(g.HoldCount(), 0u);
  g.Acquire();
  g.Acquire();  // recursive: the owner may acquire again
  EXPECT_TRUE(g.HeldByCurrentThread());
  EXPECT_EQ(g.HoldCount(), 2u);
  EXPECT_EQ(g.RefCount(), 1u);  // holding pins without a reference
  EXPECT_FALSE(OtherThreadCanTryAcquire(g));
  EXPECT_EQ(g.Release(), Liveness::kAlive);
  EXPECT_EQ(g.HoldCount(), 1u);
  EXPECT_FALSE(OtherThreadCanTryAcquire(g));  // one acquisition is still outstanding
  EXPECT_EQ(g.Release(), Liveness::kAlive);
  EXPECT_FALSE(g.HeldByCurrentThread());
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
}

TEST(GroupLock, GL02_TryAcquireIsRecursiveForTheOwner) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  if (g.TryAcquire()) {
    if (g.TryAcquire()) {
      EXPECT_EQ(g.HoldCount(), 2u);
      (void)g.Release();
    } else {
      ADD_FAILURE() << "the owner's second TryAcquire failed";
    }
    (void)g.Release();
  } else {
    ADD_FAILURE() << "TryAcquire of a free group failed";
  }
  EXPECT_EQ(g.HoldCount(), 0u);
}

TEST(GroupLock, GL02_BlockedAcquireProceedsOnlyAfterTheLastRelease)
PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Acquire();
  g.Acquire();
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    g.Acquire();
    acquired.store(true);
    EXPECT_EQ(g.HoldCount(), 1u);
    (void)g.Release();
  });
  // WaiterCount is the documented observable for "a thread is inside Acquire".
  EXPECT_TRUE(WaitUntil([&] { return g.WaiterCount() >= 1; }));
  EXPECT_FALSE(acquired.load());
  (void)g.Release();
  EXPECT_FALSE(acquired.load());  // still held once by this thread
  (void)g.Release();
  waiter.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_EQ(g.WaiterCount(), 0u);
}

TEST(GroupLock, GL02_MutualExclusionUnderContention) {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  const int iterations = kSanitizeThread ? 5'000 : 50'000;
  long counter = 0;  // guarded by g; ThreadSanitizer checks that it is
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < iterations; ++i) {
        std::scoped_lock lock(g);
        ++counter;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter, 4L * iterations);
}

TEST(GroupLock, LockableAndExplicitSpellings) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.lock();
  EXPECT_TRUE(g.HeldByCurrentThread());
  g.unlock();
  if (g.try_lock()) {
    EXPECT_TRUE(g.HeldByCurrentThread());
    g.unlock();
  } else {
    ADD_FAILURE();
  }
  g.Acquire(SourceLocation::current());
  if (g.TryAcquire(SourceLocation::current())) (void)g.Release();
  EXPECT_EQ(g.HoldCount(), 1u);
  (void)g.Release();
  EXPECT_FALSE(g.HeldByCurrentThread());
}

// -----------------------------------------------------------------------------
// GL03 acquiring pins the group
// -----------------------------------------------------------------------------

// What a destroy handler saw while it ran.
struct DestroyProbe {
  GroupLock* group = nullptr;
  std::mutex* chained = nullptr;
  std::atomic<int> calls{0};
  std::atomic<bool> group_held_in_handler{true};
  std::atomic<bool> chained_free_in_handler{false};
  std::thread::id thread;
};

void ProbeHandler(void* p) {
  auto* probe = static_cast<DestroyProbe*>(p);
  probe->calls.fetch_add(1);
  probe->thread = std::this_thread::get_id();
  probe->group_held_in_handler.store(probe->group->HeldByCurrentThread());
  if (probe->chained != nullptr && probe->chained->try_lock()) {
    probe->chained_free_in_handler.store(true);
    probe->chained->unlock();
  }
}

TEST(GroupLock, GL03_HolderPinsTheGroup) {
  DestroyProbe probe;
  std::mutex chained;
  Ref<GroupLock> group = GroupLock::Create({.member = &probe, .handler = &ProbeHandler});
  GroupLock* raw = group.get();
  probe.group = raw;
  probe.chained = &chained;
  raw->Chain(chained, 1);

  std::latch held(1);
  std::latch dropped(1);
  Liveness holder_release = Liveness::kAlive;
  int calls_before_release = -1;
  std::thread holder([&] {
    raw->Acquire();
    held.count_down();
    dropped.wait();
    calls_before_release = probe.calls.load();
    holder_release = raw->Release();
  });
  held.wait();
  // The last outside reference goes while another thread holds the lock: not destroyed.
  EXPECT_EQ(group.Reset(), Liveness::kAlive);
  EXPECT_EQ(probe.calls.load(), 0);
  const std::thread::id holder_id = holder.get_id();
  dropped.count_down();
  holder.join();

  EXPECT_EQ(calls_before_release, 0);
  EXPECT_EQ(holder_release, Liveness::kGone);  // the holder's release destroyed it
  EXPECT_EQ(probe.calls.load(), 1);
  EXPECT_EQ(probe.thread, holder_id);
  // The handlers ran after the group's lock and its chained lock were let go.
  EXPECT_FALSE(probe.group_held_in_handler.load());
  EXPECT_TRUE(probe.chained_free_in_handler.load());
}

TEST(GroupLock, GL03_OwnLastReferenceDroppedWhileHolding) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  DestroyProbe probe;
  Ref<GroupLock> group = GroupLock::Create({.member = &probe, .handler = &ProbeHandler});
  GroupLock* raw = group.get();
  probe.group = raw;
  raw->Acquire();
  raw->Acquire();
  EXPECT_EQ(group.Reset(), Liveness::kAlive);
  EXPECT_EQ(raw->Release(), Liveness::kAlive);  // still held once
  EXPECT_EQ(probe.calls.load(), 0);
  EXPECT_EQ(raw->Release(), Liveness::kGone);
  EXPECT_EQ(probe.calls.load(), 1);
  EXPECT_FALSE(probe.group_held_in_handler.load());
}

TEST(GroupLock, GL03_WaiterPinsTheGroup) {
  DestroyProbe probe;
  Ref<GroupLock> group = GroupLock::Create({.member = &probe, .handler = &ProbeHandler});
  GroupLock* raw = group.get();
  probe.group = raw;
  raw->Acquire();
  int calls_seen_by_waiter = -1;
  Liveness waiter_release = Liveness::kAlive;
  std::thread waiter([&] {
    raw->Acquire();  // blocks: this thread holds no reference, only its place in the queue
    calls_seen_by_waiter = probe.calls.load();
    waiter_release = raw->Release();
  });
  if (!WaitUntil([&] { return raw->WaiterCount() >= 1; })) {
    ADD_FAILURE() << "the waiter never showed in WaiterCount()";
    (void)raw->Release();
    waiter.join();
    return;
  }
  // Drop the last reference while one thread holds and another waits; then let go.
  EXPECT_EQ(group.Reset(), Liveness::kAlive);
  EXPECT_EQ(raw->Release(), Liveness::kAlive);  // the waiter still pins the group
  waiter.join();
  EXPECT_EQ(calls_seen_by_waiter, 0);  // not destroyed under the waiter
  EXPECT_EQ(waiter_release, Liveness::kGone);
  EXPECT_EQ(probe.calls.load(), 1);
  EXPECT_FALSE(probe.group_held_in_handler.load());
}

// -----------------------------------------------------------------------------
// GL04 destroy handlers
// -----------------------------------------------------------------------------

TEST(GroupLock, GL04_HandlersRunOnceInRegistrationOrder) {
  EventLog log;
  Member first{"first", &log};
  Member a{"a", &log};
  Member b{"b", &log};
  Member c{"c", &log};
  Ref<GroupLock> group = GroupLock::Create({.member = &first, .handler = &RecordDestroy});
  EXPECT_TRUE(group->AddHandler(&a, &RecordDestroy));
  EXPECT_TRUE(group->AddHandler(&b, &RecordDestroy));
  EXPECT_TRUE(group->AddHandler(&c, &RecordDestroy));
  EXPECT_EQ(group->HandlerCount(), 4u);
  EXPECT_TRUE(group->DelHandler(&b, &RecordDestroy));  // b leaves early
  EXPECT_FALSE(group->DelHandler(&b, &RecordDestroy));
  EXPECT_EQ(group->HandlerCount(), 3u);
  EXPECT_TRUE(log.Events().empty());

  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_THAT(log.Events(), ElementsAre("first", "a", "c"));
  EXPECT_EQ(first.calls.load(), 1);
  EXPECT_EQ(a.calls.load(), 1);
  EXPECT_EQ(b.calls.load(), 0);
  EXPECT_EQ(c.calls.load(), 1);
}

TEST(GroupLock, GL04_CreationHandlerCanLeaveEarly) {
  EventLog log;
  Member first{"first", &log};
  Member a{"a", &log};
  Ref<GroupLock> group = GroupLock::Create({.member = &first, .handler = &RecordDestroy});
  EXPECT_TRUE(group->AddHandler(&a, &RecordDestroy));
  EXPECT_TRUE(group->DelHandler(&first, &RecordDestroy));
  EXPECT_EQ(group->HandlerCount(), 1u);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_THAT(log.Events(), ElementsAre("a"));
}

TEST(GroupLock, GL04_DuplicateHandlerIsReportedNotDoubled) {
  EventLog log;
  Member a{"a", &log};
  Member b{"b", &log};
  Ref<GroupLock> group = GroupLock::Create({.member = &a, .handler = &RecordDestroy});
  PLEXUS_EXPECT_MISUSE_HERE(group->AddHandler(&a, &RecordDestroy));
  {
    LogCapture quiet;
    ScopedMisuseAction action(MisuseAction::kLog);
    EXPECT_FALSE(group->AddHandler(&a, &RecordDestroy));
  }
  EXPECT_EQ(group->HandlerCount(), 1u);
  // Same member with another callback, or another member with the same callback, are new pairs.
  EXPECT_TRUE(group->AddHandler(&a, &OtherDestroy));
  EXPECT_TRUE(group->AddHandler(&b, &RecordDestroy));
  PLEXUS_EXPECT_MISUSE_HERE(group->AddHandler(&b, &RecordDestroy));
  EXPECT_EQ(group->HandlerCount(), 3u);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_THAT(log.Events(), ElementsAre("a", "other:a", "b"));
  EXPECT_EQ(a.calls.load(), 1);
  EXPECT_EQ(a.other_calls.load(), 1);
}

// -----------------------------------------------------------------------------
// GL05 add_ref/dec_ref
// -----------------------------------------------------------------------------

TEST(GroupLock, GL05_BalancedAddRefDecRefFromManyThreads) {
  Member member;
  Ref<GroupLock> group = GroupLock::Create({.member = &member, .handler = &RecordDestroy});
  GroupLock* raw = group.get();
  const int iterations = kSanitizeThread ? 10'000 : 100'000;
  std::atomic<int> unexpected{0};
  std::latch start(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < iterations; ++i) {
        raw->AddRef();
        if (raw->DecRef() != Liveness::kAlive) unexpected.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(group->RefCount(), 1u);
  EXPECT_EQ(member.calls.load(), 0);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_EQ(member.calls.load(), 1);
}

TEST(GroupLock, GL05_OnlyTheDecRefReachingZeroReportsGone) {
  constexpr int kThreads = 4;
  const int rounds = kSanitizeThread ? 200 : 2'000;
  for (int round = 0; round < rounds; ++round) {
    Member member;
    GroupLock* raw = GroupLock::Create({.member = &member, .handler = &RecordDestroy}).Detach();
    for (int t = 1; t < kThreads; ++t) raw->AddRef();  // one reference per thread
    std::atomic<int> gone{0};
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < 10; ++i) {
          raw->AddRef();
          if (raw->DecRef() == Liveness::kGone) gone.fetch_add(1);
        }
        if (raw->DecRef() == Liveness::kGone) gone.fetch_add(1);  // this thread's own
      });
    }
    for (std::thread& t : threads) t.join();
    ASSERT_EQ(gone.load(), 1) << "round " << round;
    ASSERT_EQ(member.calls.load(), 1) << "round " << round;
  }
}

// -----------------------------------------------------------------------------
// GL06 chain order
// -----------------------------------------------------------------------------

TEST(GroupLock, GL06_ChainOrder) {
  EventLog log;
  InstrumentedLock minus2("-2", &log);
  InstrumentedLock minus1("-1", &log);
  InstrumentedLock plus1("+1", &log);
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  // Chained out of order on purpose: the position decides, not the chaining order.
  g.Chain(plus1, 1);
  g.Chain(minus1, -1);
  g.Chain(minus2, -2);
  EXPECT_EQ(g.ChainLength(), 3u);
  log.Clear();

  g.Acquire();
  EXPECT_TRUE(minus2.HeldByCurrentThread());
  EXPECT_TRUE(minus1.HeldByCurrentThread());
  EXPECT_TRUE(plus1.HeldByCurrentThread());
  (void)g.Release();
  EXPECT_THAT(log.Events(),
              ElementsAre("lock -2", "lock -1", "lock +1", "unlock +1", "unlock -1", "unlock -2"));
  EXPECT_TRUE(minus2.IsFree());
  EXPECT_TRUE(minus1.IsFree());
  EXPECT_TRUE(plus1.IsFree());

  // TryAcquire walks the same order.
  log.Clear();
  if (g.TryAcquire()) (void)g.Release();
  EXPECT_THAT(log.Events(),
              ElementsAre("lock -2", "lock -1", "lock +1", "unlock +1", "unlock -1", "unlock -2"));

  EXPECT_TRUE(g.Unchain(minus1));
  EXPECT_TRUE(g.Unchain(plus1));
  EXPECT_TRUE(g.Unchain(minus2));
  EXPECT_EQ(g.ChainLength(), 0u);
}

// Where the group's own lock sits in the walk: positions <= 0 before it, positive ones after.
// The validator's held stack (LockOrderHeldByCurrentThread) shows whether the own lock is held
// at the moment each chained lock is taken.
TEST(GroupLock, GL06_OwnLockIsTakenAfterNonPositiveAndBeforePositivePositions) {
  ScopedLockOrderValidation validation;
  EventLog log;
  InstrumentedLock minus2("-2", &log);
  InstrumentedLock zero("0", &log);
  InstrumentedLock plus1("+1", &log);
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(minus2, -2);
  g.Chain(zero, 0);
  g.Chain(plus1, 1);
  for (InstrumentedLock* l : {&minus2, &zero, &plus1}) {
    l->set_on_lock([&log, &g, l] {
      log.Add(l->name() + (LockOrderHeldByCurrentThread(&g) ? " after own" : " before own"));
    });
  }
  log.Clear();
  g.Acquire();
  (void)g.Release();
  EXPECT_THAT(log.Events(),
              ElementsAre("lock -2", "-2 before own", "lock 0", "0 before own", "lock +1",
                          "+1 after own", "unlock +1", "unlock 0", "unlock -2"));
  for (InstrumentedLock* l : {&minus2, &zero, &plus1}) l->set_on_lock(nullptr);
  EXPECT_EQ(LockOrderViolationCount(), 0u);
}

TEST(GroupLock, GL06_EqualPositionsAreTakenInChainingOrder) {
  EventLog log;
  InstrumentedLock first("first", &log);
  InstrumentedLock second("second", &log);
  InstrumentedLock third("third", &log);
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(first, -1);
  g.Chain(second, -1);
  g.Chain(third, -1);
  log.Clear();
  g.Acquire();
  (void)g.Release();
  EXPECT_THAT(log.Events(), ElementsAre("lock first", "lock second", "lock third", "unlock third",
                                        "unlock second", "unlock first"));
}

// "Each recursion level of Acquire takes every chained lock again".
TEST(GroupLock, GL06_EachRecursionLevelRetakesChainedLocks) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  InstrumentedLock ext("ext");
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(ext, -1);
  g.Acquire();
  g.Acquire();
  EXPECT_EQ(ext.depth(), 2);
  (void)g.Release();
  EXPECT_EQ(ext.depth(), 1);
  (void)g.Release();
  EXPECT_TRUE(ext.IsFree());
  EXPECT_EQ(ext.foreign_unlocks(), 0);
}

TEST(GroupLock, UnchainOfALockThatIsNotChainedReturnsFalse) {
  std::mutex never_chained;
  std::mutex chained;
  Ref<GroupLock> group = GroupLock::Create();
  EXPECT_FALSE(group->Unchain(never_chained));  // empty chain
  group->Chain(chained, 1);
  EXPECT_FALSE(group->Unchain(never_chained));  // non-empty chain
  EXPECT_EQ(group->ChainLength(), 1u);
  EXPECT_TRUE(group->Unchain(chained));
  EXPECT_FALSE(group->Unchain(chained));
}

// -----------------------------------------------------------------------------
// GL07 chained lock used alone
// -----------------------------------------------------------------------------

TEST(GroupLock, GL07_ChainedLockUsedAloneKeepsTheOrder) {
  // Recursive: a thread that holds it and then acquires the group takes it again through
  // the chain.
  std::recursive_mutex external;
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(external, -1);
  const int iterations = kSanitizeThread ? 2'000 : 20'000;
  long counter = 0;  // guarded by g
  std::latch start(2);
  // One path takes the external lock first, then the group (which takes the external lock
  // again, then its own); the other acquires the group directly. Both follow external ->
  // group, so they cannot deadlock.
  std::thread external_first([&] {
    start.arrive_and_wait();
    for (int i = 0; i < iterations; ++i) {
      std::lock_guard outer(external);
      std::scoped_lock inner(g);
      ++counter;
    }
  });
  std::thread group_only([&] {
    start.arrive_and_wait();
    for (int i = 0; i < iterations; ++i) {
      std::scoped_lock lock(g);
      ++counter;
    }
  });
  external_first.join();
  group_only.join();
  EXPECT_EQ(counter, 2L * iterations);
  EXPECT_TRUE(OtherThreadCanTryLock(external));
  EXPECT_TRUE(g.Unchain(external));
}

// -----------------------------------------------------------------------------
// GL08 chain while held
// -----------------------------------------------------------------------------

void ExpectChainWhileHeldBalances(int position) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  SCOPED_TRACE("position " + std::to_string(position));
  InstrumentedLock ext("ext");
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Acquire();
  g.Acquire();
  g.Chain(ext, position);
  EXPECT_TRUE(ext.HeldByCurrentThread());
  EXPECT_EQ(ext.depth(), 2);  // once per level held
  (void)g.Release();
  EXPECT_EQ(ext.depth(), 1);
  (void)g.Release();
  EXPECT_TRUE(ext.IsFree());
  EXPECT_TRUE(OtherThreadCanTryLock(ext));

  // Unchaining while held lets go of it once per level held.
  g.Acquire();
  g.Acquire();
  EXPECT_EQ(ext.depth(), 2);
  EXPECT_TRUE(g.Unchain(ext));
  EXPECT_TRUE(ext.IsFree());
  (void)g.Release();
  (void)g.Release();
  EXPECT_TRUE(ext.IsFree());
  EXPECT_EQ(g.ChainLength(), 0u);
  EXPECT_EQ(ext.foreign_unlocks(), 0);
  EXPECT_FALSE(g.HeldByCurrentThread());
}

TEST(GroupLock, GL08_ChainWhileHeldAfterTheOwnLock) {
  ExpectChainWhileHeldBalances(1);
}

TEST(GroupLock, GL08_ChainWhileHeldBeforeTheOwnLock) {
  ExpectChainWhileHeldBalances(-1);
}

TEST(GroupLock, GL08_ChainWhileNotHeldLeavesTheLockFree) {
  InstrumentedLock ext("ext");
  Ref<GroupLock> group = GroupLock::Create();
  group->Chain(ext, 1);
  EXPECT_TRUE(ext.IsFree());
  EXPECT_TRUE(group->Unchain(ext));
  EXPECT_TRUE(ext.IsFree());
  EXPECT_EQ(ext.foreign_unlocks(), 0);
}

// -----------------------------------------------------------------------------
// GL09 try-acquire with a busy chained lock
// -----------------------------------------------------------------------------

// Another thread holds `busy` (a chained lock) until the test is done.
class BusyLock {
 public:
  template <class L>
  explicit BusyLock(L& lock)
      : thread_([this, &lock] {
          lock.lock();
          taken_.count_down();
          done_.wait();
          lock.unlock();
        }) {
    taken_.wait();
  }
  ~BusyLock() { Let(); }
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

int CountEvents(const std::vector<std::string>& events, const std::string& event) {
  int n = 0;
  for (const std::string& e : events) n += e == event ? 1 : 0;
  return n;
}

TEST(GroupLock, GL09_TryAcquireWithABusyChainedLock) {
  EventLog log;
  InstrumentedLock before("-1", &log);
  InstrumentedLock after("+1", &log);
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(before, -1);
  g.Chain(after, 1);
  const std::uint32_t refs = g.RefCount();

  {
    BusyLock busy(after);  // the last lock in the walk is busy
    log.Clear();
    const bool got = g.TryAcquire();  // returns at once; blocking here would hang the test
    EXPECT_FALSE(got);
    if (got) (void)g.Release();
    EXPECT_FALSE(g.HeldByCurrentThread());
    EXPECT_EQ(g.HoldCount(), 0u);
    EXPECT_TRUE(before.IsFree());  // what it took, it let go
    EXPECT_EQ(g.RefCount(), refs);
    EXPECT_EQ(g.WaiterCount(), 0u);
    const std::vector<std::string> events = log.Events();
    EXPECT_EQ(CountEvents(events, "lock -1"), CountEvents(events, "unlock -1"));
    EXPECT_EQ(CountEvents(events, "lock +1"), 0);
  }
  {
    BusyLock busy(before);  // the first lock in the walk is busy
    log.Clear();
    const bool got = g.TryAcquire();
    EXPECT_FALSE(got);
    if (got) (void)g.Release();
    EXPECT_TRUE(after.IsFree());
    EXPECT_EQ(g.RefCount(), refs);
    EXPECT_TRUE(log.Events().empty());  // nothing was taken at all
  }
  // Every lock is free again: the group can be tried, and is taken with its chain.
  if (g.TryAcquire()) {
    EXPECT_TRUE(before.HeldByCurrentThread());
    EXPECT_TRUE(after.HeldByCurrentThread());
    (void)g.Release();
  } else {
    ADD_FAILURE() << "TryAcquire failed with every lock free";
  }
  EXPECT_TRUE(before.IsFree());
  EXPECT_TRUE(after.IsFree());
  EXPECT_EQ(before.foreign_unlocks() + after.foreign_unlocks(), 0);
}

// The uncontended chained path takes the own lock first and only tries the locks chained
// before it, so it never registers as a waiter: the word sees one CAS per acquire and one per
// release, and the chained lock its own two operations (four locked read-modify-writes for a
// pair with one std::mutex chained, where the ordered walk costs six). Registration is the
// observable part: a walker is counted by WaiterCount while it takes the chained locks.
TEST(GroupLock, GL06_UncontendedChainedAcquireDoesNotRegisterAsWaiter) {
  EventLog log;
  InstrumentedLock before("-1", &log);
  InstrumentedLock after("+1", &log);
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(before, -1);
  g.Chain(after, 1);
  std::vector<std::uint32_t> waiters;
  for (InstrumentedLock* l : {&before, &after}) {
    l->set_on_lock([&waiters, &g] { waiters.push_back(g.WaiterCount()); });
  }
  log.Clear();
  g.Acquire();
  EXPECT_TRUE(before.HeldByCurrentThread());
  EXPECT_TRUE(after.HeldByCurrentThread());
  EXPECT_EQ(g.HoldCount(), 1u);
  EXPECT_EQ(g.WaiterCount(), 0u);
  EXPECT_EQ(g.Release(), Liveness::kAlive);
  for (InstrumentedLock* l : {&before, &after}) l->set_on_lock(nullptr);
  EXPECT_THAT(waiters, ElementsAre(0u, 0u));
  EXPECT_THAT(log.Events(), ElementsAre("lock -1", "lock +1", "unlock +1", "unlock -1"));
  EXPECT_EQ(g.WaiterCount(), 0u);
  EXPECT_TRUE(before.IsFree());
  EXPECT_TRUE(after.IsFree());
  EXPECT_EQ(before.failed_tries(), 0);
}

// A lock chained before the own lock is busy: the uncontended path lets go of the own lock
// (it may not wait for that lock out of order) and the acquisition walks the chain in order,
// waiting as a registered waiter, while the group's own lock stays free for others to try.
TEST(GroupLock, GL06_BusyLockChainedBeforeTheOwnLockFallsBackToTheOrderedWalk) {
  EventLog log;
  InstrumentedLock before("-1", &log);
  InstrumentedLock after("+1", &log);
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(before, -1);
  g.Chain(after, 1);
  std::optional<BusyLock> busy(std::in_place, before);
  std::atomic<bool> acquired{false};
  std::thread walker([&] {
    g.Acquire();
    acquired.store(true);
    EXPECT_TRUE(before.HeldByCurrentThread());
    EXPECT_TRUE(after.HeldByCurrentThread());
    (void)g.Release();
  });
  WaitUntil([&] { return g.WaiterCount() == 1u; });  // walking: registered, waiting on -1
  EXPECT_FALSE(acquired.load());
  EXPECT_TRUE(after.IsFree());
  EXPECT_GE(before.failed_tries(), 1);  // the uncontended path tried it once
  busy.reset();                         // let go of -1: the walker proceeds
  walker.join();
  EXPECT_TRUE(acquired.load());
  EXPECT_EQ(g.WaiterCount(), 0u);
  EXPECT_TRUE(before.IsFree());
  EXPECT_TRUE(after.IsFree());
  EXPECT_EQ(before.foreign_unlocks() + after.foreign_unlocks(), 0);
}

TEST(GroupLock, GL09_TryAcquireWhileAnotherThreadHoldsTheGroup) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  InstrumentedLock before("-1");
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(before, -1);
  g.Acquire();
  bool got = true;
  bool before_free_after_try = false;
  OnOtherThread([&] {
    got = false;
    if (g.TryAcquire()) {
      got = true;
      (void)g.Release();
    }
    before_free_after_try = !before.HeldByCurrentThread();
  });
  EXPECT_FALSE(got);
  EXPECT_TRUE(before_free_after_try);
  EXPECT_EQ(before.depth(), 1);  // still this thread's, once
  (void)g.Release();
  EXPECT_TRUE(before.IsFree());
  EXPECT_EQ(before.foreign_unlocks(), 0);
}

// -----------------------------------------------------------------------------
// GL10 replace
// -----------------------------------------------------------------------------

TEST(GroupLock, GL10_ReplaceMovesMembersChainAndReferences) {
  EventLog log;
  Member m1{"m1", &log};
  Member m2{"m2", &log};
  Member own{"new", &log};
  InstrumentedLock ext("ext");

  Ref<GroupLock> old_a = GroupLock::Create();
  EXPECT_TRUE(old_a->AddHandler(&m1, &RecordDestroy));
  EXPECT_TRUE(old_a->AddHandler(&m2, &RecordDestroy));
  old_a->Chain(ext, -1);
  Ref<GroupLock> old_b = old_a;
  Ref<GroupLock> old_c = old_a;
  ASSERT_EQ(old_a->RefCount(), 3u);  // three outside references

  Ref<GroupLock> fresh = GroupLock::Create({.member = &own, .handler = &RecordDestroy});
  EXPECT_EQ(old_a->ReplaceWith(*fresh), Liveness::kGone);
  EXPECT_TRUE(log.Events().empty());  // the old group's members were moved, not called
  EXPECT_EQ(fresh->HandlerCount(), 3u);
  EXPECT_EQ(fresh->ChainLength(), 1u);
  EXPECT_EQ(fresh->RefCount(), 4u);  // its own and the three moved ones
  EXPECT_TRUE(ext.IsFree());

  // The new group takes the chained lock.
  fresh->Acquire();
  EXPECT_TRUE(ext.HeldByCurrentThread());
  (void)fresh->Release();
  EXPECT_TRUE(ext.IsFree());

  // The old group forwards: acquiring it acquires the new one.
  old_b->Acquire();
  EXPECT_TRUE(fresh->HeldByCurrentThread());
  EXPECT_TRUE(ext.HeldByCurrentThread());
  (void)old_b->Release();
  EXPECT_FALSE(fresh->HeldByCurrentThread());
  EXPECT_TRUE(ext.IsFree());

  // Dropping the moved references drops them from the new group; nothing is destroyed.
  EXPECT_EQ(old_a.Reset(), Liveness::kAlive);
  EXPECT_EQ(old_b.Reset(), Liveness::kAlive);
  EXPECT_EQ(old_c.Reset(), Liveness::kAlive);
  EXPECT_EQ(fresh->RefCount(), 1u);
  EXPECT_TRUE(log.Events().empty());

  // The new group's destruction calls every member once: its own first, then the moved ones.
  EXPECT_EQ(fresh.Reset(), Liveness::kGone);
  EXPECT_THAT(log.Events(), ElementsAre("new", "m1", "m2"));
  EXPECT_EQ(ext.foreign_unlocks(), 0);
}

TEST(GroupLock, GL10_ReplacementOutlivesTheOldGroupsReferences) {
  // The replacement's own reference goes first; the moved references keep it alive.
  Member m{"m"};
  Ref<GroupLock> old_group = GroupLock::Create({.member = &m, .handler = &RecordDestroy});
  Ref<GroupLock> fresh = GroupLock::Create();
  EXPECT_EQ(old_group->ReplaceWith(*fresh), Liveness::kGone);
  EXPECT_EQ(fresh.Reset(), Liveness::kAlive);
  EXPECT_EQ(m.calls.load(), 0);
  EXPECT_EQ(old_group.Reset(), Liveness::kGone);  // forwarded: the last reference of the new one
  EXPECT_EQ(m.calls.load(), 1);
}

// -----------------------------------------------------------------------------
// GL11 misuse is reported, not undefined
// -----------------------------------------------------------------------------

TEST(GroupLock, GL11_ReleaseOfAGroupNotHeld) {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  PLEXUS_EXPECT_MISUSE_HERE((void)g.Release());
  // Nothing was broken: the group still works, from this thread and others.
  EXPECT_EQ(g.RefCount(), 1u);
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
  g.Acquire();
  EXPECT_EQ(g.HoldCount(), 1u);
  (void)g.Release();
}

TEST(GroupLock, GL11_ReleaseByAThreadThatDoesNotHold) {
  InstrumentedLock ext("ext");
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(ext, -1);
  g.Acquire();
  OnOtherThread([&] { PLEXUS_EXPECT_MISUSE_HERE((void)g.Release()); });
  // The holder still holds, and nothing was unlocked behind its back.
  EXPECT_EQ(g.HoldCount(), 1u);
  EXPECT_TRUE(ext.HeldByCurrentThread());
  EXPECT_EQ(ext.foreign_unlocks(), 0);
  (void)g.Release();
  EXPECT_TRUE(ext.IsFree());
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
}

TEST(GroupLock, GL11_ReleaseNotHeldWithLogActionReturnsAndLogsTheCaller) {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  const std::uint64_t before = MisuseReportCount();
  // clang-format off
  const int line = __LINE__; [&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS { EXPECT_EQ(g.Release(), Liveness::kAlive); }();
  // clang-format on
  EXPECT_EQ(MisuseReportCount(), before + 1);
  const auto records = log.Records();
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records[0].level, LogLevel::kError);
  EXPECT_EQ(records[0].file, __FILE__);
  EXPECT_EQ(records[0].line, static_cast<unsigned>(line));
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
}

TEST(GroupLock, GL11_ChainingTheSameLockTwice) {
  InstrumentedLock ext("ext");
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(ext, 1);
  PLEXUS_EXPECT_MISUSE_HERE(g.Chain(ext, 2));
  PLEXUS_EXPECT_MISUSE_HERE(g.Chain(ext, 1));
  EXPECT_EQ(g.ChainLength(), 1u);
  // Still consistent: acquiring takes it once, releasing frees it, nothing is left held.
  EXPECT_FALSE(g.HeldByCurrentThread());
  EXPECT_TRUE(ext.IsFree());
  g.Acquire();
  EXPECT_EQ(ext.depth(), 1);
  (void)g.Release();
  EXPECT_TRUE(ext.IsFree());
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
  EXPECT_EQ(ext.foreign_unlocks(), 0);
}

TEST(GroupLock, GL11_ChainingAGroupToItself) {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  PLEXUS_EXPECT_MISUSE_HERE(g.Chain(g, -1));
  EXPECT_EQ(g.ChainLength(), 0u);
  EXPECT_EQ(g.RefCount(), 1u);  // no reference was kept for the refused chain
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
  EXPECT_EQ(group.Reset(), Liveness::kGone);
}

TEST(GroupLock, GL11_ReplacingAGroupByItself) {
  Member m;
  Ref<GroupLock> group = GroupLock::Create({.member = &m, .handler = &RecordDestroy});
  GroupLock& g = *group;
  PLEXUS_EXPECT_MISUSE_HERE((void)g.ReplaceWith(g));
  EXPECT_FALSE(g.IsDestroyed());
  EXPECT_EQ(m.calls.load(), 0);
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_EQ(m.calls.load(), 1);
}

TEST(GroupLock, GL11_DecRefOnADestroyedGroupWithReferenceDebugging) {
  // In debug mode destroyed groups are quarantined, so this DecRef is reported instead of
  // touching freed memory (AddressSanitizer would say otherwise).
  ScopedRefDebugging debugging(true);
  Member m;
  Ref<GroupLock> group = GroupLock::Create({.member = &m, .handler = &RecordDestroy});
  const GroupLock* raw = group.get();
  ASSERT_EQ(group.Reset(), Liveness::kGone);
  ASSERT_EQ(m.calls.load(), 1);
  PLEXUS_EXPECT_MISUSE_HERE((void)raw->DecRef());
  EXPECT_EQ(m.calls.load(), 1);  // not destroyed a second time
}

// -----------------------------------------------------------------------------
// GL12/GL13 reference debugging through GroupLock
// -----------------------------------------------------------------------------

std::vector<unsigned> LinesOf(const std::vector<RefHolder>& holders) {
  std::vector<unsigned> lines;
  for (const RefHolder& h : holders) lines.push_back(static_cast<unsigned>(h.where.line()));
  return lines;
}

TEST(GroupLock, GL12_HoldersListedWithSourceLines) {
  ScopedRefDebugging debugging(true);
  // clang-format off
  const int line_create = __LINE__; Ref<GroupLock> group = GroupLock::Create();
  const int line_copy = __LINE__; Ref<GroupLock> copy = group;
  const int line_bare = __LINE__; group->AddRef();
  // clang-format on
  const std::vector<RefHolder> holders = RefHoldersOf(group.get());
  EXPECT_THAT(LinesOf(holders), ElementsAre(line_create, line_copy, line_bare));
  for (const RefHolder& h : holders) EXPECT_STREQ(h.where.file_name(), __FILE__);
  const std::string dump = group->Dump();
  EXPECT_TRUE(MentionsLocation(dump, __FILE__, line_copy)) << dump;
  EXPECT_TRUE(MentionsLocation(dump, __FILE__, line_bare)) << dump;
  const std::string report = RefDebugReport();
  EXPECT_TRUE(MentionsLocation(report, __FILE__, line_create)) << report;
  EXPECT_TRUE(MentionsLocation(report, __FILE__, line_copy)) << report;
  EXPECT_TRUE(MentionsLocation(report, __FILE__, line_bare)) << report;

  EXPECT_EQ(copy.Reset(), Liveness::kAlive);
  EXPECT_EQ(group->DecRef(), Liveness::kAlive);
  EXPECT_THAT(LinesOf(RefHoldersOf(group.get())), ElementsAre(line_create));
  const std::string after = group->Dump();
  EXPECT_FALSE(MentionsLocation(after, __FILE__, line_copy)) << after;
  EXPECT_FALSE(MentionsLocation(after, __FILE__, line_bare)) << after;

  const void* address = group.get();
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  for (const TrackedObject& t : LiveTrackedObjects()) EXPECT_NE(t.object, address);
}

TEST(GroupLock, GL13_DebuggingOffRecordsNothing) {
  ScopedRefDebugging debugging(false);
  Member m;
  Ref<GroupLock> group = GroupLock::Create({.member = &m, .handler = &RecordDestroy});
  // clang-format off
  const int line_copy = __LINE__; Ref<GroupLock> copy = group;
  const int line_bare = __LINE__; group->AddRef();
  // clang-format on
  EXPECT_TRUE(RefHoldersOf(group.get()).empty());
  for (const TrackedObject& t : LiveTrackedObjects()) EXPECT_NE(t.object, group.get());
  const std::string dump = group->Dump();
  EXPECT_FALSE(MentionsLocation(dump, __FILE__, line_copy)) << dump;
  EXPECT_FALSE(MentionsLocation(dump, __FILE__, line_bare)) << dump;
  EXPECT_THAT(RefDebugReport(), ::testing::HasSubstr("off"));
  // Behaviour is the same as with debugging on.
  EXPECT_EQ(group->RefCount(), 3u);
  EXPECT_EQ(group->DecRef(), Liveness::kAlive);
  EXPECT_EQ(copy.Reset(), Liveness::kAlive);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_EQ(m.calls.load(), 1);
}

// -----------------------------------------------------------------------------
// Forced destruction
// -----------------------------------------------------------------------------

TEST(GroupLock, DestroyRunsHandlersNowWhateverTheCount) {
  Member m{"m"};
  Member late{"late"};
  InstrumentedLock ext("ext");
  Ref<GroupLock> group = GroupLock::Create({.member = &m, .handler = &RecordDestroy});
  group->Chain(ext, -1);
  Ref<GroupLock> other = group;
  group->Destroy();
  EXPECT_EQ(m.calls.load(), 1);
  EXPECT_TRUE(group->IsDestroyed());
  EXPECT_TRUE(ext.IsFree());
  // Later use other than DecRef is misuse.
  PLEXUS_EXPECT_MISUSE_HERE(group->Acquire());
  {
    LogCapture quiet;
    ScopedMisuseAction action(MisuseAction::kLog);
    EXPECT_FALSE(group->AddHandler(&late, &RecordDestroy));
  }
  // The references held elsewhere stay safe to drop; nothing runs twice.
  const std::uint64_t reports = MisuseReportCount();
  EXPECT_EQ(other.Reset(), Liveness::kAlive);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_EQ(MisuseReportCount(), reports);
  EXPECT_EQ(m.calls.load(), 1);
  EXPECT_EQ(late.calls.load(), 0);
}

TEST(GroupLock, DestroyWhileHeldThenReleaseIsAllowed) {
  Member m{"m"};
  InstrumentedLock before("-1");
  InstrumentedLock after("+1");
  Ref<GroupLock> group = GroupLock::Create({.member = &m, .handler = &RecordDestroy});
  GroupLock& g = *group;
  g.Chain(before, -1);
  g.Chain(after, 1);
  g.Acquire();
  g.Destroy();  // unchains every chained lock, letting go of what this thread holds
  EXPECT_EQ(m.calls.load(), 1);
  const std::uint64_t reports = MisuseReportCount();
  (void)g.Release();  // allowed: this thread held the group when it was destroyed
  EXPECT_EQ(MisuseReportCount(), reports);
  EXPECT_TRUE(before.IsFree());
  EXPECT_TRUE(after.IsFree());
  EXPECT_EQ(before.foreign_unlocks() + after.foreign_unlocks(), 0);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_EQ(m.calls.load(), 1);
}

// -----------------------------------------------------------------------------
// GL17 group and std locks together
// -----------------------------------------------------------------------------

TEST(GroupLock, GL17_StdScopedLockWithAGroupAndAStdMutex) {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  std::mutex m;
  {
    std::scoped_lock both(g, m);
    EXPECT_TRUE(g.HeldByCurrentThread());
    EXPECT_FALSE(OtherThreadCanTryLock(m));
    EXPECT_FALSE(OtherThreadCanTryAcquire(g));
  }
  EXPECT_FALSE(g.HeldByCurrentThread());
  EXPECT_TRUE(OtherThreadCanTryLock(m));
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
  {
    std::scoped_lock both(m, g);  // the other order: std::lock's algorithm copes
    EXPECT_TRUE(g.HeldByCurrentThread());
  }
  EXPECT_FALSE(g.HeldByCurrentThread());
  EXPECT_TRUE(OtherThreadCanTryLock(m));
}

TEST(GroupLock, GL17_StdUniqueLockTryToLockReportsOwnership) {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  {
    std::unique_lock<GroupLock> lock(g, std::try_to_lock);
    EXPECT_TRUE(lock.owns_lock());
    EXPECT_TRUE(g.HeldByCurrentThread());
    lock.unlock();
    EXPECT_FALSE(lock.owns_lock());
    EXPECT_FALSE(g.HeldByCurrentThread());
  }
  // Held by another thread: try_to_lock does not own it.
  std::latch held(1);
  std::latch done(1);
  std::thread holder([&] {
    std::scoped_lock lock(g);
    held.count_down();
    done.wait();
  });
  held.wait();
  {
    std::unique_lock<GroupLock> lock(g, std::try_to_lock);
    EXPECT_FALSE(lock.owns_lock());
    EXPECT_EQ(g.HoldCount(), 0u);
  }
  done.count_down();
  holder.join();
  // Held by this thread: recursive, so try_to_lock owns a second level.
  {
    std::unique_lock<GroupLock> outer(g);
    std::unique_lock<GroupLock> inner(g, std::try_to_lock);
    EXPECT_TRUE(inner.owns_lock());
    EXPECT_EQ(g.HoldCount(), 2u);
  }
  EXPECT_EQ(g.HoldCount(), 0u);
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
}

// -----------------------------------------------------------------------------
// GL19 a group chained into groups
// -----------------------------------------------------------------------------

TEST(GroupLock, GL19_GroupChainedIntoGroups) {
  Member dialog_member{"dialog"};
  Ref<GroupLock> dialog = GroupLock::Create({.member = &dialog_member, .handler = &RecordDestroy});
  Ref<GroupLock> tsx1 = GroupLock::Create();
  Ref<GroupLock> tsx2 = GroupLock::Create();
  GroupLock* dialog_raw = dialog.get();
  tsx1->Chain(*dialog, -1);
  tsx2->Chain(*dialog, -1);

  // Acquiring a transaction takes the dialog too.
  tsx1->Acquire();
  EXPECT_TRUE(dialog_raw->HeldByCurrentThread());
  EXPECT_FALSE(OtherThreadCanTryAcquire(*dialog_raw));
  EXPECT_FALSE(OtherThreadCanTryAcquire(*tsx2));  // tsx2 needs the dialog first
  (void)tsx1->Release();
  EXPECT_FALSE(dialog_raw->HeldByCurrentThread());
  EXPECT_TRUE(OtherThreadCanTryAcquire(*tsx2));

  // A thread holding the dialog alone keeps both transactions out, and a transaction can be
  // taken by the dialog's holder (the chain re-takes the dialog recursively).
  dialog_raw->Acquire();
  EXPECT_FALSE(OtherThreadCanTryAcquire(*tsx1));
  tsx1->Acquire();
  EXPECT_EQ(dialog_raw->HoldCount(), 2u);
  (void)tsx1->Release();
  (void)dialog_raw->Release();

  // The chains keep the dialog alive after its owner lets go.
  EXPECT_EQ(dialog.Reset(), Liveness::kAlive);
  EXPECT_EQ(dialog_member.calls.load(), 0);
  tsx2->Acquire();  // still usable through the chain
  EXPECT_TRUE(dialog_raw->HeldByCurrentThread());
  (void)tsx2->Release();
  EXPECT_EQ(tsx1.Reset(), Liveness::kGone);
  EXPECT_EQ(dialog_member.calls.load(), 0);  // tsx2 still chains it
  EXPECT_EQ(tsx2.Reset(), Liveness::kGone);
  EXPECT_EQ(dialog_member.calls.load(), 1);
}

TEST(GroupLock, GL19_UnchainingDropsTheChainsReference) {
  Member dialog_member{"dialog"};
  Ref<GroupLock> dialog = GroupLock::Create({.member = &dialog_member, .handler = &RecordDestroy});
  Ref<GroupLock> tsx = GroupLock::Create();
  tsx->Chain(*dialog, -1);
  EXPECT_EQ(dialog->RefCount(), 2u);  // the chain holds one
  EXPECT_TRUE(tsx->Unchain(*dialog));
  EXPECT_EQ(dialog->RefCount(), 1u);
  EXPECT_EQ(dialog.Reset(), Liveness::kGone);
  EXPECT_EQ(dialog_member.calls.load(), 1);
  EXPECT_EQ(tsx.Reset(), Liveness::kGone);
}

// -----------------------------------------------------------------------------
// GL20 chain changes while others wait
// -----------------------------------------------------------------------------

// A holds the group; B waits in Acquire; A changes the chain (chain == true: chains `ext` at
// `position`; false: unchains it) and releases; B acquires and releases.
void ChainChangeWhileWaiting(bool chain, int position) {
  SCOPED_TRACE(std::string(chain ? "chain" : "unchain") + " at " + std::to_string(position));
  InstrumentedLock ext("ext");
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  if (!chain) g.Chain(ext, position);

  g.Acquire();  // A
  bool b_held_ext = !chain;
  std::thread b([&] {
    g.Acquire();
    b_held_ext = ext.HeldByCurrentThread();
    (void)g.Release();
  });
  EXPECT_TRUE(WaitUntil([&] { return g.WaiterCount() >= 1; }));
  if (chain) {
    g.Chain(ext, position);
    EXPECT_TRUE(ext.HeldByCurrentThread());
  } else {
    EXPECT_TRUE(g.Unchain(ext));
    EXPECT_FALSE(ext.HeldByCurrentThread());
  }
  (void)g.Release();
  b.join();
  // B walked the chain as it was when it got the group.
  EXPECT_EQ(b_held_ext, chain);
  EXPECT_TRUE(ext.IsFree());
  EXPECT_EQ(ext.foreign_unlocks(), 0);  // B never unlocked a lock it did not take
  EXPECT_FALSE(g.HeldByCurrentThread());
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
}

TEST(GroupLock, GL20_ChainWhileAnotherThreadWaits) {
  ChainChangeWhileWaiting(true, -1);
  ChainChangeWhileWaiting(true, 1);
}

TEST(GroupLock, GL20_UnchainWhileAnotherThreadWaits) {
  ChainChangeWhileWaiting(false, -1);
  ChainChangeWhileWaiting(false, 1);
}

// -----------------------------------------------------------------------------
// Chain failures, cycles, forced destruction while held, validator balance
// -----------------------------------------------------------------------------

// A chained lock that reports misuse whenever it is taken, at the location it is taken for.
class MisusingLock {
 public:
  void Acquire(SourceLocation where) { ReportMisuse("MisusingLock taken", where); }
  bool TryAcquire(SourceLocation where) {
    ReportMisuse("MisusingLock taken", where);
    return false;
  }
  void Release() {}
};

// A non-recursive lock whose try_lock fails while anyone (the caller included) holds it.
class FlagLock {
 public:
  void lock() {
    while (held_.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
  }
  bool try_lock() { return !held_.exchange(true, std::memory_order_acquire); }
  void unlock() { held_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> held_{false};
};

// The group is left as before a refused Chain: not held, nothing chained, no reference kept.
void ExpectChainLeftNothing(GroupLock& g, std::uint32_t refs) {
  EXPECT_EQ(g.HoldCount(), 0u);
  EXPECT_EQ(g.ChainLength(), 0u);
  EXPECT_EQ(g.RefCount(), refs);
  EXPECT_EQ(g.WaiterCount(), 0u);
  EXPECT_FALSE(LockOrderHeldByCurrentThread(&g));
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
}

TEST(GroupLock, ChainRefusedByTheLockOrderValidatorLeavesNothingHeld) {
  ScopedLockOrderValidation validation;
  LogCapture quiet;
  const LockOrderAction previous = SetLockOrderAction(LockOrderAction::kRefuse);
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  Mutex mu;
  OnOtherThread([&] {
    std::scoped_lock outer(mu);
    std::scoped_lock inner(g);  // establishes mu -> group
  });
  {
    BusyLock busy(mu);  // the try fails, so Chain blocks, and the validator refuses group -> mu
    EXPECT_THROW(g.Chain(mu, 1), LockOrderError);
  }
  SetLockOrderAction(previous);
  ExpectChainLeftNothing(g, 1);
  EXPECT_TRUE(OtherThreadCanTryLock(mu));
  EXPECT_EQ(group.Reset(), Liveness::kGone);
}

TEST(GroupLock, ChainedGroupRefusedByTheLockOrderValidatorKeepsNoReference) {
  ScopedLockOrderValidation validation;
  LogCapture quiet;
  const LockOrderAction previous = SetLockOrderAction(LockOrderAction::kRefuse);
  Ref<GroupLock> group = GroupLock::Create();
  Ref<GroupLock> inner = GroupLock::Create();
  GroupLock& g = *group;
  GroupLock& h = *inner;
  OnOtherThread([&] {
    std::scoped_lock outer(h);
    std::scoped_lock in(g);  // establishes h -> g
  });
  {
    BusyLock busy(h);
    EXPECT_THROW(g.Chain(h, 1), LockOrderError);
  }
  SetLockOrderAction(previous);
  ExpectChainLeftNothing(g, 1);
  EXPECT_EQ(h.RefCount(), 1u);  // the refused chain kept no reference to h
  EXPECT_TRUE(OtherThreadCanTryAcquire(h));
  EXPECT_EQ(inner.Reset(), Liveness::kGone);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
}

TEST(GroupLock, ChainedLockThatReportsMisuseLeavesNothingHeld) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  MisusingLock bad;
  PLEXUS_EXPECT_MISUSE_HERE(g.Chain(bad, -1));
  ExpectChainLeftNothing(g, 1);
  PLEXUS_EXPECT_MISUSE_HERE(g.Chain(bad, 1));
  ExpectChainLeftNothing(g, 1);
  // The same while this thread holds the group twice: both levels stay, nothing else does.
  g.Acquire();
  g.Acquire();
  PLEXUS_EXPECT_MISUSE_HERE(g.Chain(bad, 1));
  EXPECT_EQ(g.HoldCount(), 2u);
  EXPECT_EQ(g.ChainLength(), 0u);
  (void)g.Release();
  (void)g.Release();
  ExpectChainLeftNothing(g, 1);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
}

TEST(GroupLock, ChainingADestroyedGroupIsReportedAtTheCaller) {
  Ref<GroupLock> group = GroupLock::Create();
  Ref<GroupLock> dead = GroupLock::Create();
  dead->Destroy();
  PLEXUS_EXPECT_MISUSE_HERE(group->Chain(*dead, -1));
  ExpectChainLeftNothing(*group, 1);
  EXPECT_EQ(dead->RefCount(), 1u);
  EXPECT_EQ(dead.Reset(), Liveness::kGone);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
}

// Chaining groups into a cycle would make every acquisition walk the cycle forever; it is
// refused before anything is taken. Without the check the refused calls below never return.
void ExpectChainCyclesRefused() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  Ref<GroupLock> g1 = GroupLock::Create();
  Ref<GroupLock> g2 = GroupLock::Create();
  Ref<GroupLock> g3 = GroupLock::Create();
  g1->Chain(*g2, -1);
  PLEXUS_EXPECT_MISUSE_HERE(g2->Chain(*g1, -1));
  PLEXUS_EXPECT_MISUSE_HERE(g2->Chain(*g1, 1));
  g2->Chain(*g3, 1);
  PLEXUS_EXPECT_MISUSE_HERE(g3->Chain(*g1, -1));
  PLEXUS_EXPECT_MISUSE_HERE(g3->Chain(*g2, 2));
  g2->Acquire();  // refused while held as well, and the hold is kept
  PLEXUS_EXPECT_MISUSE_HERE(g3->Chain(*g1, 1));
  EXPECT_EQ(g2->HoldCount(), 1u);
  (void)g2->Release();
  EXPECT_EQ(g1->ChainLength(), 1u);
  EXPECT_EQ(g2->ChainLength(), 1u);
  EXPECT_EQ(g3->ChainLength(), 0u);
  EXPECT_EQ(g1->RefCount(), 1u);
  EXPECT_EQ(g2->RefCount(), 2u);
  EXPECT_EQ(g3->RefCount(), 2u);
  // The acyclic chains still work: g1 takes g2, which takes g3.
  g1->Acquire();
  EXPECT_TRUE(g2->HeldByCurrentThread());
  EXPECT_TRUE(g3->HeldByCurrentThread());
  (void)g1->Release();
  EXPECT_TRUE(OtherThreadCanTryAcquire(*g3));
  EXPECT_TRUE(OtherThreadCanTryAcquire(*g1));
  EXPECT_EQ(g1.Reset(), Liveness::kGone);
  EXPECT_EQ(g2.Reset(), Liveness::kGone);
  EXPECT_EQ(g3.Reset(), Liveness::kGone);
}

TEST(GroupLock, ChainCyclesAreRefusedWithoutValidation) {
  ExpectChainCyclesRefused();
}

TEST(GroupLock, ChainCyclesAreRefusedWithValidation) {
  ScopedLockOrderValidation validation;
  ExpectChainCyclesRefused();
}

// What a destroy handler saw of its group.
struct DestroyWitness {
  GroupLock* group = nullptr;
  std::atomic<int> calls{0};
  bool held = true;
  std::uint32_t hold_count = 99;
  bool on_validator_stack = true;
};

void WitnessDestroy(void* w) {
  auto* witness = static_cast<DestroyWitness*>(w);
  witness->held = witness->group->HeldByCurrentThread();
  witness->hold_count = witness->group->HoldCount();
  witness->on_validator_stack = LockOrderHeldByCurrentThread(witness->group);
  witness->calls.fetch_add(1);
}

TEST(GroupLock, DestroyByARecursiveHolderRunsHandlersWithTheLockLetGo)
PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  ScopedLockOrderValidation validation;
  DestroyWitness witness;
  InstrumentedLock after("+1");
  Ref<GroupLock> group = GroupLock::Create({.member = &witness, .handler = &WitnessDestroy});
  GroupLock& g = *group;
  witness.group = &g;
  g.Chain(after, 1);
  g.Acquire();
  g.Acquire();
  g.Destroy();
  EXPECT_EQ(witness.calls.load(), 1);
  EXPECT_FALSE(witness.held);
  EXPECT_EQ(witness.hold_count, 0u);
  EXPECT_FALSE(witness.on_validator_stack);
  EXPECT_TRUE(after.IsFree());
  // The holder's own releases remain allowed, one per level it held.
  const std::uint64_t reports = MisuseReportCount();
  (void)g.Release();
  (void)g.Release();
  EXPECT_EQ(MisuseReportCount(), reports);
  PLEXUS_EXPECT_MISUSE_HERE((void)g.Release());  // one more is not
  EXPECT_FALSE(LockOrderHeldByCurrentThread(&g));
  EXPECT_EQ(after.foreign_unlocks(), 0);
  EXPECT_EQ(group.Reset(), Liveness::kGone);
  EXPECT_EQ(witness.calls.load(), 1);
}

TEST(GroupLock, FailedRecursiveTryAcquireLeavesTheValidatorBalanced)
PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  ScopedLockOrderValidation validation;
  InstrumentedLock before("-1");
  FlagLock after;  // not recursive: the recursive try fails on it, after the own lock
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(before, -1);
  g.Chain(after, 1);
  g.Acquire();
  EXPECT_FALSE(g.TryAcquire());
  EXPECT_EQ(g.HoldCount(), 1u);
  EXPECT_EQ(before.depth(), 1);
  (void)g.Release();
  EXPECT_FALSE(LockOrderHeldByCurrentThread(&g));
  EXPECT_FALSE(LockOrderHeldByCurrentThread(&before));
  EXPECT_TRUE(before.IsFree());
  EXPECT_TRUE(OtherThreadCanTryAcquire(g));
}

TEST(GroupLock, WaiterLimitMatchesTheWordLayout) {
  static_assert(GroupLock::kMaxWaiters == (1u << 29) - 1);
  EXPECT_EQ(GroupLock::kMaxWaiters, (1u << 29) - 1);
}

}  // namespace
}  // namespace plexus
