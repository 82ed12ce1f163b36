// CdrWriter: every submitted record becomes one row, written off the caller's thread.

#include "cdr_writer.h"

#include "gtest/gtest.h"

namespace sim {
namespace {

CallEnded Record(std::uint64_t id) {
  CallEnded r;
  r.call_id = id;
  r.device = static_cast<std::uint32_t>(id % 7);
  r.callee = 2000;
  r.disposition = "ANSWERED";
  r.cause = "normal";
  r.start_us = 1;
  r.end_us = 2;
  return r;
}

TEST(CdrWriter, OP02_EveryRecordIsOneRow) {
  CdrWriter writer;
  ASSERT_EQ(writer.Open("", 64), "");
  EXPECT_EQ(writer.Path(), ":memory:");
  std::vector<CallEnded> batch;
  for (std::uint64_t id = 1; id <= 300; ++id) {
    batch.push_back(Record(id));
    if (batch.size() == 128) writer.Submit(std::exchange(batch, {}));
  }
  writer.Submit(std::move(batch));
  writer.Submit({});  // nothing to write: no transaction
  EXPECT_EQ(writer.Close(), 300);
  EXPECT_EQ(writer.Written(), 300u);
  EXPECT_EQ(writer.Failures(), 0u);
  EXPECT_EQ(writer.Transactions(), 3u);
}

TEST(CdrWriter, OP02_ADuplicateRecordFailsAndIsCounted) {
  CdrWriter writer;
  ASSERT_EQ(writer.Open("", 64), "");
  writer.Submit({Record(1), Record(1), Record(2)});
  EXPECT_EQ(writer.Close(), 2);
  EXPECT_EQ(writer.Failures(), 1u);
}

TEST(CdrWriter, OP02_AnUnopenableFileIsAnError) {
  CdrWriter writer;
  EXPECT_NE(writer.Open("/nonexistent-directory/cdr.db", 64), "");
  EXPECT_EQ(writer.Close(), -1);
}

}  // namespace
}  // namespace sim
