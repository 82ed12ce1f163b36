// RunCatching: code plexus does not own runs with its exceptions caught, logged once with
// what threw and where, and reported to the caller as a failure.
#include "plexus/core/internal/run_catching.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "core/test_support.h"

namespace {

using plexus::core_internal::RunCatching;

TEST(RunCatching, ReturnsTrueAndLogsNothingWhenTheCodeReturns) {
  plexus_test::LogCapture log;
  int ran = 0;
  int described = 0;
  EXPECT_TRUE(RunCatching([&] { ++ran; },
                          [&] {
                            ++described;
                            return std::string("unused");
                          },
                          plexus::SourceLocation::current()));
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(described, 0);  // the description is built only on failure
  EXPECT_TRUE(log.Records().empty());
}

TEST(RunCatching, LogsAnExceptionsMessageWithTheCallersLocation) {
  plexus_test::LogCapture log;
  const auto where = plexus::SourceLocation::current();
  EXPECT_FALSE(RunCatching([] { throw std::runtime_error("boom"); },
                           [] { return std::string("task processor 'tp': a task"); }, where));
  const auto records = log.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].level, plexus::LogLevel::kError);
  EXPECT_EQ(records[0].message, "task processor 'tp': a task threw: boom");
  EXPECT_EQ(records[0].line, where.line());
}

TEST(RunCatching, LogsANonExceptionThrow) {
  plexus_test::LogCapture log;
  EXPECT_FALSE(RunCatching([] { throw 42; }, [] { return std::string("a timer callback"); },
                           plexus::SourceLocation::current()));
  const auto records = log.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].message, "a timer callback threw a non-exception");
}

}  // namespace
