#include "plexus/core/misuse.h"

#include <cstdint>
#include <string>

#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/core/log.h"
#include "plexus/core/source_location.h"

namespace plexus {
namespace {

using plexus_test::LogCapture;
using plexus_test::MentionsLocation;
using plexus_test::ScopedMisuseAction;

// The misuse-reporting API as a library function uses it: a defaulted location parameter, so
// that the report names the caller of this function, not this function.
void RefuseWidget(int* refused, SourceLocation where = SourceLocation::current()) {
  ReportMisuse("widget refused", where);
  ++*refused;  // reached only with MisuseAction::kLog
}

TEST(Misuse, DefaultActionIsThrow) {
  // Every test restores the action it changes, so the process default is what is seen here.
  EXPECT_EQ(GetMisuseAction(), MisuseAction::kThrow);
}

TEST(Misuse, UsageErrorCarriesTheCallersLocation) {
  int refused = 0;
  int line = 0;
  try {
    // clang-format off
    line = __LINE__; RefuseWidget(&refused);
    // clang-format on
    ADD_FAILURE() << "ReportMisuse did not throw under kThrow";
  } catch (const UsageError& e) {
    EXPECT_EQ(e.Where().line(), static_cast<unsigned>(line));
    EXPECT_STREQ(e.Where().file_name(), __FILE__);
    const std::string what = e.what();
    // what() starts with "file:line: " and carries the message.
    EXPECT_EQ(what.rfind(FormatLocation(e.Where()) + ": ", 0), 0u) << what;
    EXPECT_NE(what.find("widget refused"), std::string::npos) << what;
  }
  EXPECT_EQ(refused, 0);  // the operation was not carried on
}

TEST(Misuse, UsageErrorIsALogicError) {
  const SourceLocation here = SourceLocation::current();
  const UsageError error("bad call", here);
  const std::logic_error& base = error;
  EXPECT_TRUE(MentionsLocation(base.what(), here.file_name(), static_cast<int>(here.line())))
      << base.what();
}

TEST(Misuse, SetMisuseActionReturnsThePreviousAction) {
  const MisuseAction original = SetMisuseAction(MisuseAction::kLog);
  EXPECT_EQ(SetMisuseAction(MisuseAction::kAbort), MisuseAction::kLog);
  EXPECT_EQ(GetMisuseAction(), MisuseAction::kAbort);
  EXPECT_EQ(SetMisuseAction(original), MisuseAction::kAbort);
  EXPECT_EQ(GetMisuseAction(), original);
}

TEST(Misuse, LogActionLogsAtErrorLevelAndReturns) {
  LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  int refused = 0;
  // clang-format off
  const int line = __LINE__; RefuseWidget(&refused);
  // clang-format on
  EXPECT_EQ(refused, 1);  // ReportMisuse returned
  const auto records = log.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, LogLevel::kError);
  EXPECT_EQ(records[0].file, __FILE__);
  EXPECT_EQ(records[0].line, static_cast<unsigned>(line));
  EXPECT_NE(records[0].message.find("widget refused"), std::string::npos) << records[0].message;
}

TEST(Misuse, ThrowActionAlsoLogs) {
  LogCapture log;
  int refused = 0;
  EXPECT_THROW(RefuseWidget(&refused), UsageError);
  const auto records = log.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, LogLevel::kError);
}

TEST(Misuse, ReportCountIncrementsForEveryReport) {
  const std::uint64_t before = MisuseReportCount();
  int refused = 0;
  EXPECT_THROW(RefuseWidget(&refused), UsageError);
  EXPECT_EQ(MisuseReportCount(), before + 1);
  {
    LogCapture quiet;
    ScopedMisuseAction action(MisuseAction::kLog);
    RefuseWidget(&refused);
    RefuseWidget(&refused);
  }
  EXPECT_EQ(MisuseReportCount(), before + 3);
}

TEST(MisuseDeathTest, AbortActionAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        SetMisuseAction(MisuseAction::kAbort);
        int refused = 0;
        RefuseWidget(&refused);
      },
      "widget refused");
}

}  // namespace
}  // namespace plexus
