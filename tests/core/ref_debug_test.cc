#include "plexus/core/ref_debug.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/core/ref.h"
#include "plexus/core/thread_id.h"

namespace plexus {
namespace {

using plexus_test::LogCapture;
using plexus_test::MentionsLocation;
using plexus_test::ScopedRefDebugging;
using ::testing::HasSubstr;

class Tracked : public RefCounted {
 public:
  explicit Tracked(std::atomic<int>* destroyed) noexcept : destroyed_(destroyed) {}
  ~Tracked() override { destroyed_->fetch_add(1); }

 private:
  std::atomic<int>* destroyed_;
};

std::optional<TrackedObject> FindTracked(const void* object) {
  for (TrackedObject& t : LiveTrackedObjects()) {
    if (t.object == object) return std::move(t);
  }
  return std::nullopt;
}

std::vector<unsigned> LinesOf(const std::vector<RefHolder>& holders) {
  std::vector<unsigned> lines;
  for (const RefHolder& h : holders) lines.push_back(static_cast<unsigned>(h.where.line()));
  return lines;
}

TEST(RefDebug, GL12_HoldersListedWithSourceLines) {
  std::atomic<int> destroyed{0};
  // Created before debugging is switched on, so the creator's reference is not tracked and the
  // listing holds exactly the three references taken below.
  Ref<Tracked> origin = MakeRef<Tracked>(&destroyed);
  ScopedRefDebugging debugging(true);
  ASSERT_TRUE(RefDebuggingEnabled());

  // Three references at three lines: a Ref sharing a raw pointer, a Ref copy, a bare AddRef.
  // clang-format off
  const int line_a = __LINE__; Ref<Tracked> a(origin.get());
  const int line_b = __LINE__; Ref<Tracked> b = a;
  const int line_c = __LINE__; origin->AddRef();
  // clang-format on

  const std::vector<RefHolder> holders = RefHoldersOf(origin.get());
  ASSERT_EQ(holders.size(), 3u);
  EXPECT_THAT(LinesOf(holders), ::testing::ElementsAre(line_a, line_b, line_c));
  for (const RefHolder& h : holders) {
    EXPECT_STREQ(h.where.file_name(), __FILE__);
    EXPECT_EQ(h.thread, CurrentThreadNumber());
  }
  EXPECT_EQ(holders[0].key, &a);  // a Ref is its own holder key
  EXPECT_EQ(holders[1].key, &b);
  EXPECT_EQ(holders[2].key, nullptr);  // a bare AddRef has none

  const std::optional<TrackedObject> tracked = FindTracked(origin.get());
  ASSERT_TRUE(tracked.has_value());
  EXPECT_THAT(tracked->type_name, HasSubstr("Tracked"));
  EXPECT_EQ(tracked->holders.size(), 3u);

  const std::string report = RefDebugReport();
  EXPECT_TRUE(MentionsLocation(report, __FILE__, line_a)) << report;
  EXPECT_TRUE(MentionsLocation(report, __FILE__, line_b)) << report;
  EXPECT_TRUE(MentionsLocation(report, __FILE__, line_c)) << report;
  EXPECT_THAT(report, HasSubstr("Tracked"));

  // Drop two: the Ref copy, and the bare reference (matched by file, PJLIB's way).
  EXPECT_EQ(b.Reset(), Liveness::kAlive);
  EXPECT_EQ(origin->DecRef(), Liveness::kAlive);
  EXPECT_THAT(LinesOf(RefHoldersOf(origin.get())), ::testing::ElementsAre(line_a));
  const std::string after = RefDebugReport();
  EXPECT_TRUE(MentionsLocation(after, __FILE__, line_a)) << after;
  EXPECT_FALSE(MentionsLocation(after, __FILE__, line_b)) << after;
  EXPECT_FALSE(MentionsLocation(after, __FILE__, line_c)) << after;

  // Still alive with a recorded holder: a leak report names it and that holder.
  {
    LogCapture log;
    const std::size_t leaked = ReportRefLeaks();
    EXPECT_GE(leaked, 1u);
    EXPECT_EQ(leaked, LiveTrackedObjects().size());
    const auto records = log.Records();
    ASSERT_FALSE(records.empty());
    EXPECT_EQ(records[0].level, LogLevel::kError);
    EXPECT_TRUE(MentionsLocation(log.Text(), __FILE__, line_a)) << log.Text();
  }

  // Once everything is dropped the object is gone from the tables, and from leak reports.
  a.Reset();
  EXPECT_EQ(origin.Reset(), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
  EXPECT_FALSE(FindTracked(origin.get()).has_value());
  {
    LogCapture log;
    ReportRefLeaks();
    EXPECT_FALSE(MentionsLocation(log.Text(), __FILE__, line_a)) << log.Text();
  }
}

// Kept on one line with its constant so the death test below knows which line leaks.
// clang-format off
Ref<Tracked>* LeakReference(Tracked* object) { return new Ref<Tracked>(object); } constexpr int kLeakLine = __LINE__;
// clang-format on

// At process exit, an object still alive is reported as a leak with its holders (the report
// that PLEXUS_REF_DEBUG_EXIT_CODE turns into an exit status for CI).
TEST(RefDebugDeathTest, GL12_LeakAtExitReportedWithItsHolders) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  static std::atomic<int> destroyed{0};
  const std::string pattern = "reference leak report.*" + std::string(__FILE__) + ":" +
                              std::to_string(kLeakLine) + "[^0-9]";
  EXPECT_EXIT(
      {
        setenv("PLEXUS_REF_DEBUG_EXIT_CODE", "7", 1);
        EnableRefDebugging(true);
        Ref<Tracked> object = MakeRef<Tracked>(&destroyed);
        (void)LeakReference(object.get());
        std::exit(0);
      },
      ::testing::ExitedWithCode(7), pattern);
}

TEST(RefDebug, GL13_DebuggingOffRecordsNothing) {
  ScopedRefDebugging debugging(false);
  EXPECT_FALSE(RefDebuggingEnabled());
  EXPECT_THAT(RefDebugReport(), HasSubstr("off"));

  std::atomic<int> destroyed{0};
  Ref<Tracked> a = MakeRef<Tracked>(&destroyed);
  Ref<Tracked> b = a;
  a->AddRef();
  EXPECT_EQ(a->RefCount(), 3);
  EXPECT_TRUE(RefHoldersOf(a.get()).empty());
  EXPECT_FALSE(FindTracked(a.get()).has_value());
  EXPECT_THAT(RefDebugReport(), HasSubstr("off"));

  EXPECT_EQ(a->DecRef(), Liveness::kAlive);
  EXPECT_EQ(b.Reset(), Liveness::kAlive);
  EXPECT_EQ(a.Reset(), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
}

// The same script gives the same counts and outcomes with debugging on and off.
std::vector<int> RunScript() {
  std::vector<int> seen;
  std::atomic<int> destroyed{0};
  Ref<Tracked> a = MakeRef<Tracked>(&destroyed);
  Ref<Tracked> b = a;
  Ref<Tracked> c = std::move(b);
  c->AddRef();
  seen.push_back(a->RefCount());
  seen.push_back(static_cast<int>(a->DecRef()));
  Tracked* raw = c.Detach();
  seen.push_back(a->RefCount());
  seen.push_back(static_cast<int>(a.Reset()));
  seen.push_back(destroyed.load());
  seen.push_back(static_cast<int>(raw->DecRef()));
  seen.push_back(destroyed.load());
  return seen;
}

TEST(RefDebug, GL13_BehaviourIsIdenticalWithDebuggingOnAndOff) {
  std::vector<int> off;
  std::vector<int> on;
  {
    ScopedRefDebugging debugging(false);
    off = RunScript();
  }
  {
    ScopedRefDebugging debugging(true);
    on = RunScript();
  }
  EXPECT_EQ(off, on);
  EXPECT_EQ(off, (std::vector<int>{3, 0, 2, 0, 0, 1, 1}));
}

TEST(RefDebug, ReferencesTakenBeforeSwitchingOnAreNotListed) {
  std::atomic<int> destroyed{0};
  Ref<Tracked> early = MakeRef<Tracked>(&destroyed);
  Ref<Tracked> early_copy = early;
  ScopedRefDebugging debugging(true);
  EXPECT_TRUE(RefHoldersOf(early.get()).empty());
  // Dropping an untracked reference while debugging is on is harmless.
  EXPECT_EQ(early_copy.Reset(), Liveness::kAlive);
  EXPECT_TRUE(RefHoldersOf(early.get()).empty());
  EXPECT_EQ(early.Reset(), Liveness::kGone);
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(RefDebug, MovedRefKeepsItsHolderRecord) {
  std::atomic<int> destroyed{0};
  Ref<Tracked> origin = MakeRef<Tracked>(&destroyed);
  ScopedRefDebugging debugging(true);
  // clang-format off
  const int line = __LINE__; Ref<Tracked> a(origin.get());
  // clang-format on
  Ref<Tracked> moved = std::move(a);
  std::vector<RefHolder> holders = RefHoldersOf(origin.get());
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].where.line(), static_cast<unsigned>(line));
  EXPECT_EQ(holders[0].key, &moved);
  // Dropping the Ref the record moved to removes it.
  moved.Reset();
  EXPECT_TRUE(RefHoldersOf(origin.get()).empty());
}

TEST(RefDebug, CopyAssignmentRecordsTheSourcesLocation) {
  std::atomic<int> destroyed{0};
  Ref<Tracked> origin = MakeRef<Tracked>(&destroyed);
  ScopedRefDebugging debugging(true);
  // clang-format off
  const int line = __LINE__; Ref<Tracked> a(origin.get());
  // clang-format on
  Ref<Tracked> assigned;
  assigned = a;
  const std::vector<RefHolder> holders = RefHoldersOf(origin.get());
  ASSERT_EQ(holders.size(), 2u);
  EXPECT_THAT(LinesOf(holders), ::testing::ElementsAre(line, line));
  EXPECT_EQ(holders[1].key, &assigned);
  a.Reset();
  assigned.Reset();
  EXPECT_TRUE(RefHoldersOf(origin.get()).empty());
}

TEST(RefDebug, DetachKeepsTheRecordAsABareReference) {
  std::atomic<int> destroyed{0};
  Ref<Tracked> origin = MakeRef<Tracked>(&destroyed);
  ScopedRefDebugging debugging(true);
  // clang-format off
  const int line = __LINE__; Ref<Tracked> a(origin.get());
  // clang-format on
  Tracked* raw = a.Detach();
  std::vector<RefHolder> holders = RefHoldersOf(origin.get());
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].where.line(), static_cast<unsigned>(line));
  EXPECT_EQ(holders[0].key, nullptr);
  EXPECT_EQ(raw->DecRef(), Liveness::kAlive);
  EXPECT_TRUE(RefHoldersOf(origin.get()).empty());
}

// References taken together are recorded one holder each, under the key given; re-keying
// one hands it to its holder, and DecRefs drops as many records as references.
TEST(RefDebug, AddRefsRecordsOneHolderPerReference) {
  std::atomic<int> destroyed{0};
  Ref<Tracked> origin = MakeRef<Tracked>(&destroyed);
  ScopedRefDebugging debugging(true);
  const char batch = 0;
  const char queue = 0;
  // clang-format off
  const int line = __LINE__; origin->AddRefs(3, SourceLocation::current(), &batch);
  // clang-format on
  std::vector<RefHolder> holders = RefHoldersOf(origin.get());
  ASSERT_EQ(holders.size(), 3u);
  for (const RefHolder& h : holders) {
    EXPECT_EQ(h.key, &batch);
    EXPECT_EQ(h.where.line(), static_cast<unsigned>(line));
  }
  core_internal::RefTrackMove(origin.get(), &batch, &queue);
  EXPECT_EQ(origin->DecRefs(2, SourceLocation::current(), &batch), Liveness::kAlive);
  holders = RefHoldersOf(origin.get());
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].key, &queue);
  EXPECT_EQ(origin->DecRef(SourceLocation::current(), &queue), Liveness::kAlive);
  EXPECT_TRUE(RefHoldersOf(origin.get()).empty());
  EXPECT_EQ(origin->RefCount(), 1);
}

TEST(RefDebug, HoldersRecordTheTakingThread) {
  std::atomic<int> destroyed{0};
  Ref<Tracked> origin = MakeRef<Tracked>(&destroyed);
  ScopedRefDebugging debugging(true);
  std::uint32_t other_thread = 0;
  Tracked* raw = origin.get();
  std::thread([&] {
    other_thread = CurrentThreadNumber();
    raw->AddRef();
  }).join();
  const std::vector<RefHolder> holders = RefHoldersOf(raw);
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].thread, other_thread);
  EXPECT_NE(holders[0].thread, CurrentThreadNumber());
  EXPECT_EQ(raw->DecRef(), Liveness::kAlive);
}

// ref.h: "Every operation that takes a reference records the caller's SourceLocation", and the
// creator's reference is the one a leak report most often has to point at.
// MakeRef cannot capture its caller (a defaulted location cannot follow a parameter pack, see
// ref.h); Adopt(new T) is the documented way to have the creating line recorded.
TEST(RefDebug, AdoptRecordsTheCallersLine) {
  std::atomic<int> destroyed{0};
  ScopedRefDebugging debugging(true);
  // clang-format off
  const int line = __LINE__; Ref<Tracked> created = Ref<Tracked>::Adopt(new Tracked(&destroyed));
  // clang-format on
  const std::vector<RefHolder> holders = RefHoldersOf(created.get());
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_STREQ(holders[0].where.file_name(), __FILE__);
  EXPECT_EQ(holders[0].where.line(), static_cast<unsigned>(line));
}

}  // namespace
}  // namespace plexus
