#include "plexus/core/ref.h"

#include <atomic>
#include <compare>
#include <cstddef>
#include <latch>
#include <new>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/core/config.h"
#include "plexus/core/misuse.h"

namespace plexus {
namespace {

using plexus_test::ScopedMisuseAction;

// Counts its destructions, so tests can tell "destroyed exactly once" from "never" or
// "twice".
class Widget : public RefCounted {
 public:
  explicit Widget(std::atomic<int>* destroyed, int value = 0) noexcept
      : destroyed_(destroyed), value_(value) {}
  ~Widget() override { destroyed_->fetch_add(1, std::memory_order_relaxed); }

  int value() const noexcept { return value_; }

 private:
  std::atomic<int>* destroyed_;
  int value_;
};

class Gadget final : public Widget {
 public:
  using Widget::Widget;
};

TEST(Ref, MakeRefStartsWithOneReference) {
  std::atomic<int> destroyed{0};
  Ref<Widget> w = MakeRef<Widget>(&destroyed, 7);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->RefCount(), 1);
  EXPECT_EQ(w->value(), 7);
  EXPECT_EQ((*w).value(), 7);
  EXPECT_EQ(destroyed.load(), 0);
}

TEST(Ref, EmptyRefsHoldNothing) {
  Ref<Widget> a;
  Ref<Widget> b = nullptr;
  EXPECT_FALSE(a);
  EXPECT_EQ(a.get(), nullptr);
  EXPECT_TRUE(a == nullptr);
  EXPECT_TRUE(a == b);
  // Dropping nothing destroys nothing.
  EXPECT_EQ(a.Reset(), Liveness::kAlive);
  Ref<Widget> c = a;  // copying an empty Ref is allowed
  EXPECT_FALSE(c);
}

TEST(Ref, CopyTakesAReferenceAndMoveDoesNot) {
  std::atomic<int> destroyed{0};
  Ref<Widget> a = MakeRef<Widget>(&destroyed);
  {
    Ref<Widget> b = a;
    EXPECT_EQ(a->RefCount(), 2);
    EXPECT_EQ(a, b);
    Ref<Widget> c = std::move(b);
    EXPECT_EQ(a->RefCount(), 2);  // a move transfers the reference
    EXPECT_FALSE(b);              // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(c.get(), a.get());
  }
  EXPECT_EQ(a->RefCount(), 1);
  EXPECT_EQ(destroyed.load(), 0);
}

TEST(Ref, ConvertsToABaseByCopyAndByMove) {
  std::atomic<int> destroyed{0};
  Ref<Gadget> gadget = MakeRef<Gadget>(&destroyed, 3);
  Ref<Widget> by_copy = gadget;
  EXPECT_EQ(gadget->RefCount(), 2);
  EXPECT_TRUE(by_copy == gadget);
  Ref<Widget> by_move = std::move(gadget);
  EXPECT_FALSE(gadget);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(by_move->RefCount(), 2);
  EXPECT_EQ(by_move->value(), 3);
  by_copy.Reset();
  // The last reference, held through the base, destroys the derived object (virtual dtor).
  EXPECT_EQ(by_move.Reset(), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(Ref, RawPointerConstructorSharesTheObject) {
  std::atomic<int> destroyed{0};
  Ref<Widget> a = MakeRef<Widget>(&destroyed);
  Ref<Widget> b(a.get());  // shares: takes a new reference
  EXPECT_EQ(a->RefCount(), 2);
  Ref<Widget> null_ref(static_cast<Widget*>(nullptr));
  EXPECT_FALSE(null_ref);
  EXPECT_EQ(b.Reset(), Liveness::kAlive);
  EXPECT_EQ(a->RefCount(), 1);
}

TEST(Ref, AssignmentsKeepCountsRight) {
  std::atomic<int> destroyed{0};
  Ref<Widget> x = MakeRef<Widget>(&destroyed, 1);
  Ref<Widget> y = MakeRef<Widget>(&destroyed, 2);
  Ref<Widget> z = y;
  EXPECT_EQ(y->RefCount(), 2);

  // Copy assignment takes a reference on the new target and drops the old one.
  z = x;
  EXPECT_EQ(x->RefCount(), 2);
  EXPECT_EQ(y->RefCount(), 1);

  // Self-assignment changes nothing.
  Ref<Widget>& z_alias = z;
  z = z_alias;
  EXPECT_EQ(x->RefCount(), 2);

  // Move assignment drops the old target and transfers the reference.
  z = std::move(y);
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_EQ(x->RefCount(), 1);
  EXPECT_EQ(z->value(), 2);
  EXPECT_EQ(z->RefCount(), 1);

  // Assigning null drops the last reference to the second widget.
  z = nullptr;
  EXPECT_EQ(destroyed.load(), 1);
  EXPECT_FALSE(z);

  // Copy-assigning the last reference over itself through another object keeps it alive.
  Ref<Widget> w = x;
  x = w;
  EXPECT_EQ(x->RefCount(), 2);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(Ref, SwapExchangesTargetsWithoutCountChanges) {
  std::atomic<int> destroyed{0};
  Ref<Widget> a = MakeRef<Widget>(&destroyed, 1);
  Ref<Widget> b = MakeRef<Widget>(&destroyed, 2);
  swap(a, b);
  EXPECT_EQ(a->value(), 2);
  EXPECT_EQ(b->value(), 1);
  EXPECT_EQ(a->RefCount(), 1);
  EXPECT_EQ(b->RefCount(), 1);
  a.swap(a);
  EXPECT_EQ(a->value(), 2);
  Ref<Widget> empty;
  a.swap(empty);
  EXPECT_FALSE(a);
  EXPECT_EQ(empty->value(), 2);
}

TEST(Ref, ComparesAndHashesByAddress) {
  std::atomic<int> destroyed{0};
  Ref<Widget> a = MakeRef<Widget>(&destroyed);
  Ref<Widget> a2 = a;
  Ref<Widget> b = MakeRef<Widget>(&destroyed);
  EXPECT_TRUE(a == a2);
  EXPECT_FALSE(a == b);
  EXPECT_FALSE(a == nullptr);
  EXPECT_EQ(a <=> a2, std::strong_ordering::equal);
  EXPECT_EQ(a < b, a.get() < b.get());
  EXPECT_EQ(std::hash<Ref<Widget>>{}(a), std::hash<const Widget*>{}(a.get()));

  std::unordered_set<Ref<Widget>> set;
  set.insert(a);
  set.insert(a2);
  set.insert(b);
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(a->RefCount(), 3);  // a, a2 and the set's copy
  set.clear();
  EXPECT_EQ(a->RefCount(), 2);
}

TEST(Ref, ResetReportsGoneOnlyForTheLastReference) {
  std::atomic<int> destroyed{0};
  Ref<Widget> a = MakeRef<Widget>(&destroyed);
  Ref<Widget> b = a;
  EXPECT_EQ(a.Reset(), Liveness::kAlive);
  EXPECT_FALSE(a);
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_EQ(b.Reset(), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
  EXPECT_EQ(b.Reset(), Liveness::kAlive);  // nothing left to drop
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(Ref, DestructorRunsExactlyOnceWhenTheLastRefGoesOutOfScope) {
  std::atomic<int> destroyed{0};
  {
    Ref<Widget> a = MakeRef<Widget>(&destroyed);
    std::vector<Ref<Widget>> copies(10, a);
    EXPECT_EQ(a->RefCount(), 11);
  }
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(Ref, DetachAndAdoptTransferOwnershipWithoutCountChanges) {
  std::atomic<int> destroyed{0};
  Ref<Widget> a = MakeRef<Widget>(&destroyed);
  Widget* raw = a.Detach();
  EXPECT_FALSE(a);
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(raw->RefCount(), 1);  // the reference now belongs to the caller
  EXPECT_EQ(destroyed.load(), 0);
  Ref<Widget> b = Ref<Widget>::Adopt(raw);
  EXPECT_EQ(b->RefCount(), 1);
  EXPECT_EQ(b.Reset(), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(Ref, BareAddRefAndDecRefBalance) {
  std::atomic<int> destroyed{0};
  Widget* raw = MakeRef<Widget>(&destroyed).Detach();
  raw->AddRef();
  EXPECT_EQ(raw->RefCount(), 2);
  EXPECT_EQ(raw->DecRef(), Liveness::kAlive);
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_EQ(raw->DecRef(), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(Ref, AddRefsAndDecRefsMoveTheCountByN) {
  std::atomic<int> destroyed{0};
  Widget* raw = MakeRef<Widget>(&destroyed).Detach();
  raw->AddRefs(3);
  EXPECT_EQ(raw->RefCount(), 4);
  raw->AddRefs(0);
  EXPECT_EQ(raw->RefCount(), 4);
  EXPECT_EQ(raw->DecRefs(2), Liveness::kAlive);
  EXPECT_EQ(raw->RefCount(), 2);
  EXPECT_EQ(destroyed.load(), 0);
  // The drop that takes the last ones destroys, once.
  EXPECT_EQ(raw->DecRefs(2), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
}

// References taken together by one thread and dropped one by one by others (as a fan-out's
// queues drop theirs): the object goes exactly once, after the last.
TEST(Ref, AddRefsDroppedOneByOneFromManyThreads) {
  constexpr int kThreads = 8;
  for (int round = 0; round < 50; ++round) {
    std::atomic<int> destroyed{0};
    Widget* raw = MakeRef<Widget>(&destroyed).Detach();
    raw->AddRefs(kThreads - 1);
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        (void)raw->DecRef();
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(destroyed.load(), 1);
  }
}

// A RefCounted whose storage outlives its destruction (its operator delete keeps the memory),
// so that a DecRef after the count reached zero can be made without a use-after-free. This is
// the case ref.h's over-release check is for ("the cases where the memory is still ours").
class KeptStorage : public RefCounted {
 public:
  KeptStorage() noexcept = default;
  static void operator delete(void* /*p*/) noexcept {}
};

// Over-release is only observable on an object whose destructor has run, which UBSan's vptr
// check rightly reports as a member call on a dead object (inside RefCounted::DecRef itself).
// These two tests therefore run in every build but the ASan+UBSan one.
constexpr bool kSkipOverRelease = kSanitizeAddress;

Liveness DecRefAfterDestruction(const RefCounted* object, SourceLocation where) {
  return object->DecRef(where);
}
std::int32_t CountAfterDestruction(const RefCounted* object) {
  return object->RefCount();
}

TEST(Ref, DecRefBelowZeroIsReportedAsMisuseAtTheCallersLine) {
  if (kSkipOverRelease) GTEST_SKIP() << "use after destruction by design; UBSan reports it";
  alignas(KeptStorage) unsigned char storage[sizeof(KeptStorage)];
  const RefCounted* object = ::new (storage) KeptStorage();
  ASSERT_EQ(object->DecRef(), Liveness::kGone);

  ScopedMisuseAction action(MisuseAction::kThrow);
  const std::uint64_t before = MisuseReportCount();
  const SourceLocation here = SourceLocation::current();
  try {
    (void)DecRefAfterDestruction(object, here);
    ADD_FAILURE() << "DecRef below zero did not throw";
  } catch (const UsageError& e) {
    EXPECT_EQ(e.Where().line(), here.line()) << e.what();
    EXPECT_STREQ(e.Where().file_name(), __FILE__);
  }
  EXPECT_EQ(MisuseReportCount(), before + 1);
  // The count was restored, not left below zero.
  EXPECT_EQ(CountAfterDestruction(object), 0);
}

TEST(Ref, DecRefBelowZeroWithLogActionReturnsAndLeavesTheCount) {
  if (kSkipOverRelease) GTEST_SKIP() << "use after destruction by design; UBSan reports it";
  alignas(KeptStorage) unsigned char storage[sizeof(KeptStorage)];
  const RefCounted* object = ::new (storage) KeptStorage();
  ASSERT_EQ(object->DecRef(), Liveness::kGone);

  plexus_test::LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  const std::uint64_t before = MisuseReportCount();
  const SourceLocation here = SourceLocation::current();
  // Reported, and not "gone" a second time.
  EXPECT_EQ(DecRefAfterDestruction(object, here), Liveness::kAlive);
  EXPECT_EQ(MisuseReportCount(), before + 1);
  EXPECT_EQ(CountAfterDestruction(object), 0);
  const auto records = log.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, LogLevel::kError);
  EXPECT_EQ(records[0].file, __FILE__);
  EXPECT_EQ(records[0].line, here.line());
}

TEST(Ref, DecRefsBelowZeroIsReportedAndTheCountRestored) {
  if (kSkipOverRelease) GTEST_SKIP() << "use after destruction by design; UBSan reports it";
  alignas(KeptStorage) unsigned char storage[sizeof(KeptStorage)];
  const RefCounted* object = ::new (storage) KeptStorage();
  ASSERT_EQ(object->DecRef(), Liveness::kGone);

  plexus_test::LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  const std::uint64_t before = MisuseReportCount();
  EXPECT_EQ(object->DecRefs(3), Liveness::kAlive);
  EXPECT_EQ(MisuseReportCount(), before + 1);
  EXPECT_EQ(CountAfterDestruction(object), 0);
}

// Misuse found by a Ref: Reset reports it as the action says; the noexcept destructor
// cannot throw it, so under kThrow it terminates the process after logging the report.
TEST(Ref, OverReleaseFoundByResetThrowsAtTheCallersLine) {
  if (kSkipOverRelease) GTEST_SKIP() << "use after destruction by design; UBSan reports it";
  alignas(KeptStorage) unsigned char storage[sizeof(KeptStorage)];
  auto* object = ::new (storage) KeptStorage();
  ASSERT_EQ(object->DecRef(), Liveness::kGone);
  Ref<KeptStorage> bogus = Ref<KeptStorage>::Adopt(object);  // owns no reference

  ScopedMisuseAction action(MisuseAction::kThrow);
  const SourceLocation here = SourceLocation::current();
  try {
    (void)bogus.Reset(here);
    ADD_FAILURE() << "Reset of an over-released object did not throw";
  } catch (const UsageError& e) {
    EXPECT_EQ(e.Where().line(), here.line()) << e.what();
  }
  EXPECT_FALSE(bogus);
  EXPECT_EQ(CountAfterDestruction(object), 0);
}

TEST(Ref, OverReleaseInTheDestructorWithLogActionIsReportedAndContinues) {
  if (kSkipOverRelease) GTEST_SKIP() << "use after destruction by design; UBSan reports it";
  alignas(KeptStorage) unsigned char storage[sizeof(KeptStorage)];
  auto* object = ::new (storage) KeptStorage();
  ASSERT_EQ(object->DecRef(), Liveness::kGone);

  plexus_test::LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  const std::uint64_t before = MisuseReportCount();
  { Ref<KeptStorage> bogus = Ref<KeptStorage>::Adopt(object); }
  EXPECT_EQ(MisuseReportCount(), before + 1);
  EXPECT_EQ(CountAfterDestruction(object), 0);
  const auto records = log.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, LogLevel::kError);
}

TEST(RefDeathTest, OverReleaseInTheDestructorWithThrowActionTerminates) {
  if (kSkipOverRelease) GTEST_SKIP() << "use after destruction by design; UBSan reports it";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        SetMisuseAction(MisuseAction::kThrow);
        alignas(KeptStorage) unsigned char storage[sizeof(KeptStorage)];
        auto* object = ::new (storage) KeptStorage();
        (void)object->DecRef();
        Ref<KeptStorage> bogus = Ref<KeptStorage>::Adopt(object);
      },
      "DecRef on an object with no references left");
}

TEST(Ref, ConcurrentCopiesAndDropsKeepTheCount) {
  constexpr int kThreads = 4;
  const int iterations = kSanitizeThread ? 20'000 : 200'000;
  std::atomic<int> destroyed{0};
  Ref<Widget> shared = MakeRef<Widget>(&destroyed);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, mine = shared]() {
      start.arrive_and_wait();
      for (int i = 0; i < iterations; ++i) {
        Ref<Widget> copy = mine;
        Ref<Widget> moved = std::move(copy);
        Ref<Widget> shared_raw(moved.get());
        Ref<Widget> assigned;
        assigned = shared_raw;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(shared->RefCount(), 1);
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_EQ(shared.Reset(), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
}

// When several threads drop the last references at once, exactly one of them sees kGone and
// the object is destroyed exactly once.
TEST(Ref, RacingLastDropsReportGoneExactlyOnce) {
  constexpr int kThreads = 4;
  const int rounds = kSanitizeThread ? 200 : 2000;
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> destroyed{0};
    std::atomic<int> gone{0};
    std::vector<Ref<Widget>> refs;
    {
      Ref<Widget> first = MakeRef<Widget>(&destroyed);
      for (int t = 0; t < kThreads; ++t) refs.push_back(first);
    }
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, mine = std::move(refs[static_cast<std::size_t>(t)])]() mutable {
        start.arrive_and_wait();
        if (mine.Reset() == Liveness::kGone) gone.fetch_add(1);
      });
    }
    for (std::thread& t : threads) t.join();
    ASSERT_EQ(gone.load(), 1) << "round " << round;
    ASSERT_EQ(destroyed.load(), 1) << "round " << round;
  }
}

// Dropping a reference is a release and the destroying drop an acquire: every write made
// through any reference happens-before the destructor. The destructor reads plain fields
// written by other threads; ThreadSanitizer reports a race if the ordering is missing.
class Tally : public RefCounted {
 public:
  explicit Tally(std::atomic<long>* total) noexcept : total_(total) {}
  ~Tally() override {
    long sum = 0;
    for (const Slot& s : slots) sum += s.value;
    total_->store(sum);
  }
  struct alignas(64) Slot {
    long value = 0;
  };
  Slot slots[4];

 private:
  std::atomic<long>* total_;
};

TEST(Ref, WritesThroughEveryReferenceHappenBeforeTheDestructor) {
  std::atomic<long> total{-1};
  std::vector<std::thread> threads;
  {
    Ref<Tally> tally = MakeRef<Tally>(&total);
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([t, mine = tally]() {
        for (int i = 0; i < 1000; ++i) mine->slots[t].value += 1;
      });
    }
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(total.load(), 4000);
}

}  // namespace
}  // namespace plexus
