#include "plexus/sync/lock_order.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/core/config.h"
#include "plexus/core/source_location.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/mutex.h"

// ThreadSanitizer has its own lock-order detector for pthread mutexes. Every test here that
// inverts an order on purpose runs with LockOrderAction::kRefuse, so the validator throws
// LockOrderError before the real lock is taken and TSan never sees the inversion; the two
// orders also run one after the other, so no real deadlock can happen. The few tests that
// must let an inverted acquisition through (kLog, validation off) skip themselves under TSan.

namespace plexus {
namespace {

using plexus_test::LogCapture;
using plexus_test::MentionsLocation;
using ::testing::HasSubstr;

template <class Body>
void OnOtherThread(Body body) {
  std::thread(body).join();
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

// Validation on with a clean graph, refusing inversions, and every report collected; the
// global state is restored at the end.
class LockOrderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ResetLockOrderState();
    previous_enabled_ = EnableLockOrderValidation(true);
    previous_action_ = SetLockOrderAction(LockOrderAction::kRefuse);
    SetLockOrderCallback([this](const LockOrderViolation& v) {
      std::lock_guard lock(mu_);
      violations_.push_back(v);
    });
    baseline_ = LockOrderViolationCount();
  }

  void TearDown() override {
    EnableLockOrderValidation(previous_enabled_);
    SetLockOrderCallback({});
    SetLockOrderAction(previous_action_);
    ResetLockOrderState();
  }

  std::uint64_t NewViolations() const { return LockOrderViolationCount() - baseline_; }

  std::vector<LockOrderViolation> Violations() {
    std::lock_guard lock(mu_);
    return violations_;
  }

  LogCapture log_;  // the reports are logged at error level; keep them out of the output

 private:
  bool previous_enabled_ = false;
  LockOrderAction previous_action_ = LockOrderAction::kLog;
  std::uint64_t baseline_ = 0;
  std::mutex mu_;
  std::vector<LockOrderViolation> violations_;
};

// -----------------------------------------------------------------------------
// GL14 inversion detected
// -----------------------------------------------------------------------------

TEST_F(LockOrderTest, GL14_InversionDetectedWithBothOrdersAndTheirLines) {
  static LockClass kA("gl14.A");
  static LockClass kB("gl14.B");
  Mutex a(kA);
  Mutex b(kB);
  ASSERT_TRUE(LockOrderValidationEnabled());

  // Thread 1: A then B.
  int line_a1 = 0;
  int line_b1 = 0;
  OnOtherThread([&] {
    // clang-format off
    line_a1 = __LINE__; a.Acquire();
    line_b1 = __LINE__; b.Acquire();
    // clang-format on
    b.Release();
    a.Release();
  });
  EXPECT_EQ(NewViolations(), 0u);

  // Later, thread 2: B then A. Refused before A is taken.
  int line_b2 = 0;
  int line_a2 = 0;
  bool refused = false;
  unsigned refused_line = 0;
  OnOtherThread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    // clang-format off
    line_b2 = __LINE__; b.Acquire();
    // clang-format on
    try {
      // clang-format off
      line_a2 = __LINE__; a.Acquire();
      // clang-format on
      a.Release();
    } catch (const LockOrderError& e) {
      refused = true;
      refused_line = e.Where().line();
    }
    b.Release();
  });
  EXPECT_TRUE(refused);
  EXPECT_EQ(refused_line, static_cast<unsigned>(line_a2));
  EXPECT_TRUE(OtherThreadCanTryLock(a));  // the refused lock was not taken
  EXPECT_TRUE(OtherThreadCanTryLock(b));

  EXPECT_EQ(NewViolations(), 1u);
  const std::vector<LockOrderViolation> violations = Violations();
  ASSERT_EQ(violations.size(), 1u);
  const LockOrderViolation& v = violations[0];
  EXPECT_EQ(v.attempted.from, "gl14.B");
  EXPECT_EQ(v.attempted.to, "gl14.A");
  EXPECT_EQ(v.attempted.from_where.line(), static_cast<unsigned>(line_b2));
  EXPECT_EQ(v.attempted.to_where.line(), static_cast<unsigned>(line_a2));
  ASSERT_EQ(v.established.size(), 1u);
  EXPECT_EQ(v.established[0].from, "gl14.A");
  EXPECT_EQ(v.established[0].to, "gl14.B");
  EXPECT_EQ(v.established[0].from_where.line(), static_cast<unsigned>(line_a1));
  EXPECT_EQ(v.established[0].to_where.line(), static_cast<unsigned>(line_b1));
  EXPECT_NE(v.established[0].thread, v.attempted.thread);
  // The readable message names both orders and the lines where each was first seen.
  EXPECT_THAT(v.message, HasSubstr("gl14.A"));
  EXPECT_THAT(v.message, HasSubstr("gl14.B"));
  for (int line : {line_a1, line_b1, line_b2, line_a2}) {
    EXPECT_TRUE(MentionsLocation(v.message, __FILE__, line)) << v.message;
  }
  // And it was logged at error level.
  bool logged = false;
  for (const auto& r : log_.Records()) {
    logged |= r.level == LogLevel::kError && r.message.find("gl14.A") != std::string::npos;
  }
  EXPECT_TRUE(logged);
}

TEST_F(LockOrderTest, RecentViolationsAreListedForAnOperator) {
  static LockClass kA("recent.A");
  static LockClass kB("recent.B");
  Mutex a(kA);
  Mutex b(kB);
  EXPECT_TRUE(RecentLockOrderViolations().empty());
  OnOtherThread([&] {
    a.Acquire();
    b.Acquire();
    b.Release();
    a.Release();
  });
  OnOtherThread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    b.Acquire();
    EXPECT_THROW(a.Acquire(), LockOrderError);
    b.Release();
  });
  const std::vector<LockOrderViolation> recent = RecentLockOrderViolations();
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].attempted.from, "recent.B");
  EXPECT_EQ(recent[0].attempted.to, "recent.A");
  EXPECT_EQ(recent[0].message, Violations().at(0).message);
  ResetLockOrderState();
  EXPECT_TRUE(RecentLockOrderViolations().empty());
}

TEST_F(LockOrderTest, GL14_AnInversionIsReportedOnce) {
  static LockClass kA("gl14once.A");
  static LockClass kB("gl14once.B");
  Mutex a(kA);
  Mutex b(kB);
  OnOtherThread([&] {
    MutexLock la(a);
    MutexLock lb(b);
  });
  for (int attempt = 0; attempt < 3; ++attempt) {
    OnOtherThread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
      b.Acquire();
      try {
        a.Acquire();
        ADD_FAILURE() << "the inverted acquisition was let through under kRefuse";
        a.Release();
      } catch (const LockOrderError&) {
      }
      b.Release();
    });
  }
  EXPECT_EQ(NewViolations(), 1u);
  EXPECT_EQ(Violations().size(), 1u);
}

// The inversion is found through a longer established path (A -> B -> C, then C -> A).
TEST_F(LockOrderTest, GL14_TransitiveInversionNamesTheWholePath) {
  static LockClass kA("gl14path.A");
  static LockClass kB("gl14path.B");
  static LockClass kC("gl14path.C");
  Mutex a(kA);
  Mutex b(kB);
  Mutex c(kC);
  OnOtherThread([&] {
    MutexLock la(a);
    MutexLock lb(b);
  });
  OnOtherThread([&] {
    MutexLock lb(b);
    MutexLock lc(c);
  });
  bool refused = false;
  OnOtherThread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    c.Acquire();
    try {
      a.Acquire();
      a.Release();
    } catch (const LockOrderError&) {
      refused = true;
    }
    c.Release();
  });
  EXPECT_TRUE(refused);
  const std::vector<LockOrderViolation> violations = Violations();
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].attempted.from, "gl14path.C");
  EXPECT_EQ(violations[0].attempted.to, "gl14path.A");
  ASSERT_EQ(violations[0].established.size(), 2u);
  EXPECT_EQ(violations[0].established[0].from, "gl14path.A");
  EXPECT_EQ(violations[0].established[0].to, "gl14path.B");
  EXPECT_EQ(violations[0].established[1].from, "gl14path.B");
  EXPECT_EQ(violations[0].established[1].to, "gl14path.C");
}

TEST_F(LockOrderTest, GL14_InversionBetweenGroupLocks) {
  static LockClass kDialog("gl14.dialog");
  static LockClass kTsx("gl14.tsx");
  Ref<GroupLock> dialog = GroupLock::Create({.lock_class = &kDialog});
  Ref<GroupLock> tsx = GroupLock::Create({.lock_class = &kTsx});
  GroupLock& d = *dialog;
  GroupLock& t = *tsx;
  OnOtherThread([&] {
    std::scoped_lock outer(d);
    std::scoped_lock inner(t);
  });
  bool refused = false;
  OnOtherThread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    t.Acquire();
    try {
      d.Acquire();
      (void)d.Release();
    } catch (const LockOrderError&) {
      refused = true;
      EXPECT_FALSE(d.HeldByCurrentThread());
    }
    (void)t.Release();
  });
  EXPECT_TRUE(refused);
  EXPECT_EQ(NewViolations(), 1u);
  // The refused group is left as it was: free, unpinned, still usable.
  EXPECT_EQ(d.WaiterCount(), 0u);
  EXPECT_EQ(d.RefCount(), 1u);
  EXPECT_TRUE(OtherThreadCanTryLock(d));
  EXPECT_TRUE(OtherThreadCanTryLock(t));
}

// kLog reports and then takes the lock anyway. The inverted order really happens, so this
// test does not run in the TSan build (TSan would report it as well).
TEST_F(LockOrderTest, GL14_LogActionReportsAndProceeds) {
  if (kSanitizeThread) GTEST_SKIP() << "inverts real mutexes; TSan reports that by design";
  SetLockOrderAction(LockOrderAction::kLog);
  static LockClass kA("gl14log.A");
  static LockClass kB("gl14log.B");
  Mutex a(kA);
  Mutex b(kB);
  {
    MutexLock la(a);
    MutexLock lb(b);
  }
  bool took_a = false;
  {
    MutexLock lb(b);
    MutexLock la(a);  // reported, not refused
    took_a = true;
  }
  EXPECT_TRUE(took_a);
  EXPECT_EQ(NewViolations(), 1u);
  EXPECT_EQ(Violations().size(), 1u);
}

// -----------------------------------------------------------------------------
// GL15 the two-external-locks hazard
// -----------------------------------------------------------------------------

TEST_F(LockOrderTest, GL15_TwoExternalLocksChainedToOneGroup) {
  static LockClass kEA("gl15.EA");
  static LockClass kEB("gl15.EB");
  static LockClass kG("gl15.G");
  // Recursive: a thread that holds EA and then acquires G re-takes EA through the chain.
  RecursiveMutex ea(kEA);
  RecursiveMutex eb(kEB);
  Ref<GroupLock> group = GroupLock::Create({.lock_class = &kG});
  GroupLock& g = *group;
  g.Chain(ea, -2);
  g.Chain(eb, -1);  // G's chain: EA -> EB -> G
  EXPECT_EQ(NewViolations(), 0u);

  // Thread 1 takes EA, then acquires G (EA again, EB, G): consistent with the chain.
  OnOtherThread([&] {
    MutexLock hold_ea(ea);
    std::scoped_lock hold_g(g);
  });
  EXPECT_EQ(NewViolations(), 0u);

  // Thread 2 takes EB, then acquires G, whose chain takes EA while EB is held: EB -> EA
  // against EA -> EB. With the threads interleaved this is PJLIB's documented deadlock; here it is
  // reported (and refused) on first sight.
  bool refused = false;
  unsigned refused_line = 0;
  int acquire_line = 0;
  std::uint32_t hold_count_after = 99;
  OnOtherThread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    eb.Acquire();
    try {
      // clang-format off
      acquire_line = __LINE__; g.Acquire();
      // clang-format on
      (void)g.Release();
    } catch (const LockOrderError& e) {
      refused = true;
      refused_line = e.Where().line();
    }
    hold_count_after = g.HoldCount();
    eb.Release();
  });
  EXPECT_TRUE(refused);
  EXPECT_EQ(refused_line, static_cast<unsigned>(acquire_line));
  EXPECT_EQ(hold_count_after, 0u);
  EXPECT_EQ(NewViolations(), 1u);
  const std::vector<LockOrderViolation> violations = Violations();
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].attempted.from, "gl15.EB");
  EXPECT_EQ(violations[0].attempted.to, "gl15.EA");
  EXPECT_EQ(violations[0].attempted.to_where.line(), static_cast<unsigned>(acquire_line));
  ASSERT_FALSE(violations[0].established.empty());
  EXPECT_EQ(violations[0].established.front().from, "gl15.EA");
  EXPECT_EQ(violations[0].established.back().to, "gl15.EB");

  // The refusal left everything as it was: no lock held, no waiter, the group usable.
  EXPECT_EQ(g.WaiterCount(), 0u);
  EXPECT_EQ(g.RefCount(), 1u);
  EXPECT_TRUE(OtherThreadCanTryLock(ea));
  EXPECT_TRUE(OtherThreadCanTryLock(eb));
  EXPECT_TRUE(OtherThreadCanTryLock(g));
  EXPECT_TRUE(g.Unchain(ea));
  EXPECT_TRUE(g.Unchain(eb));
}

// Locks that do not validate themselves (std::mutex) take part through the class given when
// chaining. Here the same hazard arises between two groups that chain the same lock pair in
// opposite positions.
TEST_F(LockOrderTest, GL15_ChainedLocksWithoutTheirOwnValidation) {
  static LockClass kX("gl15.X");
  static LockClass kY("gl15.Y");
  std::mutex x;
  std::mutex y;
  Ref<GroupLock> first = GroupLock::Create();
  Ref<GroupLock> second = GroupLock::Create();
  first->Chain(x, -2, kX);
  first->Chain(y, -1, kY);  // X -> Y
  OnOtherThread([&] { std::scoped_lock hold(*first); });
  EXPECT_EQ(NewViolations(), 0u);
  EXPECT_TRUE(first->Unchain(x));
  EXPECT_TRUE(first->Unchain(y));
  second->Chain(y, -2, kY);
  second->Chain(x, -1, kX);  // Y -> X
  bool refused = false;
  OnOtherThread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    try {
      second->Acquire();
      (void)second->Release();
    } catch (const LockOrderError&) {
      refused = true;
    }
  });
  EXPECT_TRUE(refused);
  EXPECT_EQ(NewViolations(), 1u);
  EXPECT_TRUE(OtherThreadCanTryLock(x));
  EXPECT_TRUE(OtherThreadCanTryLock(y));
  EXPECT_EQ(second->WaiterCount(), 0u);
}

// -----------------------------------------------------------------------------
// GL16 no false alarms
// -----------------------------------------------------------------------------

TEST_F(LockOrderTest, GL16_ConsistentOrdersProduceNoReport) {
  static LockClass kOuter("gl16.outer");
  static LockClass kBefore("gl16.before");
  static LockClass kAfter("gl16.after");
  static LockClass kGroup("gl16.group");
  static LockClass kLeaf("gl16.leaf");
  constexpr int kThreads = 4;
  constexpr std::size_t kInstances = 6;
  const int iterations = kSanitizeThread ? 300 : 3'000;

  // Many instances of each class; every path follows outer -> before -> group -> after -> leaf.
  std::vector<std::unique_ptr<Mutex>> outers;
  for (std::size_t i = 0; i < kInstances; ++i) outers.push_back(std::make_unique<Mutex>(kOuter));
  struct Unit {
    RecursiveMutex before{kBefore};
    RecursiveMutex after{kAfter};
    Ref<GroupLock> group = GroupLock::Create({.lock_class = &kGroup});
  };
  std::vector<std::unique_ptr<Unit>> units;
  for (std::size_t i = 0; i < kInstances; ++i) {
    units.push_back(std::make_unique<Unit>());
    units.back()->group->Chain(units.back()->before, -1);
    units.back()->group->Chain(units.back()->after, 1);
  }
  Mutex leaf(kLeaf);
  RecursiveMutex recursive(kLeaf);

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
      for (int i = 0; i < iterations; ++i) {
        const std::size_t o = static_cast<std::size_t>(t + i) % kInstances;
        Unit& u = *units[static_cast<std::size_t>(t * 7 + i) % kInstances];
        GroupLock& g = *u.group;
        switch (i % 4) {
          case 0: {  // outer, then the group recursively, then a leaf
            MutexLock lo(*outers[o]);
            g.Acquire();
            g.Acquire();
            { MutexLock ll(leaf); }
            (void)g.Release();
            (void)g.Release();
            break;
          }
          case 1: {  // the chained "before" lock alone, then the group (chain order kept)
            MutexLock lb(u.before);
            std::scoped_lock lg(g);
            break;
          }
          case 2: {  // two instances of the same class nested (ascending, so TSan agrees)
            const std::size_t first = o;
            const std::size_t second = (o + 1) % kInstances;
            Mutex& lo = *outers[std::min(first, second)];
            Mutex& hi = *outers[std::max(first, second)];
            MutexLock l1(lo);
            MutexLock l2(hi);
            break;
          }
          case 3: {  // recursive re-acquisition, and try-locks inside the order
            recursive.Acquire();
            recursive.Acquire();
            recursive.Release();
            recursive.Release();
            MutexLock lo(*outers[o]);
            if (g.TryAcquire()) {
              if (leaf.TryAcquire()) leaf.Release();
              (void)g.Release();
            }
            break;
          }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(NewViolations(), 0u);
  EXPECT_TRUE(Violations().empty());
  for (const auto& u : units) EXPECT_EQ(u->group->WaiterCount(), 0u);
}

// Try-locks never block, so taking A with a try while B is held is no inversion.
TEST_F(LockOrderTest, GL16_TryLockAgainstTheOrderIsNoInversion) {
  if (kSanitizeThread) GTEST_SKIP() << "TSan orders try-locked pthread mutexes too";
  static LockClass kA("gl16try.A");
  static LockClass kB("gl16try.B");
  Mutex a(kA);
  Mutex b(kB);
  {
    MutexLock la(a);
    MutexLock lb(b);
  }
  {
    MutexLock lb(b);
    if (a.TryAcquire()) a.Release();
  }
  EXPECT_EQ(NewViolations(), 0u);
}

// -----------------------------------------------------------------------------
// Mutex and RecursiveMutex
// -----------------------------------------------------------------------------

TEST_F(LockOrderTest, MutexExcludesOtherThreads) {
  Mutex mu;
  {
    MutexLock lock(mu);
    EXPECT_TRUE(LockOrderHeldByCurrentThread(&mu));
    EXPECT_FALSE(OtherThreadCanTryLock(mu));
  }
  EXPECT_FALSE(LockOrderHeldByCurrentThread(&mu));
  EXPECT_TRUE(OtherThreadCanTryLock(mu));
  if (mu.TryAcquire()) {
    EXPECT_TRUE(LockOrderHeldByCurrentThread(&mu));
    mu.Release();
  } else {
    ADD_FAILURE();
  }
  long counter = 0;
  std::vector<std::thread> threads;
  const int iterations = kSanitizeThread ? 2'000 : 20'000;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < iterations; ++i) {
        std::scoped_lock lock(mu);  // Lockable
        ++counter;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(counter, 4L * iterations);
}

TEST_F(LockOrderTest, RecursiveMutexNeedsAsManyUnlocks) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  RecursiveMutex mu;
  mu.Acquire();
  mu.Acquire();
  EXPECT_TRUE(mu.TryAcquire());
  mu.Release();
  mu.Release();
  EXPECT_FALSE(OtherThreadCanTryLock(mu));
  EXPECT_TRUE(LockOrderHeldByCurrentThread(&mu));
  mu.Release();
  EXPECT_TRUE(OtherThreadCanTryLock(mu));
  EXPECT_FALSE(LockOrderHeldByCurrentThread(&mu));
}

TEST_F(LockOrderTest, MutexesWithoutAClassGetOnePerCreationLine) {
  // Two lines, two classes: nesting them in both orders is an inversion.
  Mutex first;
  Mutex second;
  EXPECT_NE(first.Class().site.line(), second.Class().site.line());
  OnOtherThread([&] {
    MutexLock l1(first);
    MutexLock l2(second);
  });
  bool refused = false;
  OnOtherThread([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
    second.Acquire();
    try {
      first.Acquire();
      first.Release();
    } catch (const LockOrderError&) {
      refused = true;
    }
    second.Release();
  });
  EXPECT_TRUE(refused);
  EXPECT_EQ(NewViolations(), 1u);
}

// A Mutex keeps its class in a CompactLockClassRef: either the LockClass or the creation site,
// and Class() gives back the one it was made with.
TEST_F(LockOrderTest, MutexClassIsItsLockClassOrItsCreationSite) {
  static_assert(sizeof(Mutex) == sizeof(std::mutex) + 16);
  static_assert(sizeof(RecursiveMutex) == sizeof(plexus::sync_internal::FutexRecursiveMutex) + 16);
  static LockClass kNamed("compact.named");
  Mutex named(kNamed);
  const SourceLocation here = SourceLocation::current();
  Mutex by_site;
  EXPECT_EQ(named.Class().named, &kNamed);
  EXPECT_EQ(named.Class().site.line(), 0u);
  EXPECT_EQ(by_site.Class().named, nullptr);
  EXPECT_EQ(by_site.Class().site.line(), here.line() + 1);
  EXPECT_STREQ(by_site.Class().site.file_name(), here.file_name());
}

// Both kinds of class take part in validation: a named class ordered against a site class, then
// the opposite order, is one inversion.
TEST_F(LockOrderTest, NamedAndSiteClassedMutexesOrderEachOther) {
  static LockClass kNamed("compact.order");
  Mutex named(kNamed);
  Mutex by_site;
  OnOtherThread([&] {
    MutexLock l1(named);
    MutexLock l2(by_site);
  });
  bool refused = false;
  OnOtherThread([&] {
    MutexLock l1(by_site);
    try {
      MutexLock l2(named);
    } catch (const LockOrderError&) {
      refused = true;
    }
  });
  EXPECT_TRUE(refused);
  ASSERT_EQ(NewViolations(), 1u);
  const LockOrderViolation v = Violations().back();
  EXPECT_THAT(v.attempted.from, ::testing::HasSubstr("lock created at"));
  EXPECT_EQ(v.attempted.to, "compact.order");
}

TEST_F(LockOrderTest, MutexChainedIntoAGroup) {
  Mutex mu;
  Ref<GroupLock> group = GroupLock::Create();
  GroupLock& g = *group;
  g.Chain(mu, 1);
  g.Acquire();
  EXPECT_TRUE(LockOrderHeldByCurrentThread(&mu));
  EXPECT_FALSE(OtherThreadCanTryLock(mu));
  (void)g.Release();
  EXPECT_TRUE(OtherThreadCanTryLock(mu));
  EXPECT_TRUE(g.Unchain(mu));
}

TEST_F(LockOrderTest, LocksTakenBeforeValidationWasOnOrderNothing) {
  if (kSanitizeThread) GTEST_SKIP() << "inverts real mutexes; TSan reports that by design";
  static LockClass kA("gl16pre.A");
  static LockClass kB("gl16pre.B");
  Mutex a(kA);
  Mutex b(kB);
  EnableLockOrderValidation(false);
  a.Acquire();
  EnableLockOrderValidation(true);
  EXPECT_FALSE(LockOrderHeldByCurrentThread(&a));
  b.Acquire();
  b.Release();
  a.Release();  // harmless: it was never on the held stack
  EXPECT_EQ(NewViolations(), 0u);
  // Nothing was recorded for A -> B, so B -> A is no inversion.
  OnOtherThread([&] {
    MutexLock lb(b);
    MutexLock la(a);
  });
  EXPECT_EQ(NewViolations(), 0u);
}

TEST_F(LockOrderTest, ValidationOffReportsNothing) {
  if (kSanitizeThread) GTEST_SKIP() << "inverts real mutexes; TSan reports that by design";
  EXPECT_TRUE(EnableLockOrderValidation(false));
  EXPECT_FALSE(LockOrderValidationEnabled());
  static LockClass kA("off.A");
  static LockClass kB("off.B");
  Mutex a(kA);
  Mutex b(kB);
  {
    MutexLock la(a);
    MutexLock lb(b);
  }
  {
    MutexLock lb(b);
    MutexLock la(a);
  }
  EXPECT_EQ(NewViolations(), 0u);
}

TEST_F(LockOrderTest, SetLockOrderActionReturnsThePreviousAction) {
  EXPECT_EQ(SetLockOrderAction(LockOrderAction::kLog), LockOrderAction::kRefuse);
  EXPECT_EQ(SetLockOrderAction(LockOrderAction::kRefuse), LockOrderAction::kLog);
}

}  // namespace
}  // namespace plexus
