// The simulator's message types render as the event stream's JSON lines: written by hand for
// speed, they must say what nlohmann-json would, byte for byte.

#include "messages.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace sim {
namespace {

using nlohmann::json;

std::string JsonOf(const plexus::Ref<plexus::Message>& m) {
  const std::optional<std::string> line = m->ToJson();
  EXPECT_TRUE(line.has_value());
  return line.value_or("");
}

TEST(Messages, DeviceNamesArePaddedToFourDigits) {
  EXPECT_EQ(DeviceName(7), "PJSIP/dev-0007");
  EXPECT_EQ(DeviceName(0), "PJSIP/dev-0000");
  EXPECT_EQ(DeviceName(12345), "PJSIP/dev-12345");
  EXPECT_EQ(DeviceName(4294967295u), "PJSIP/dev-4294967295");
}

TEST(Messages, ASnapshotRendersAsNlohmannJsonWould) {
  const auto m = CallSnapshotType().Make(CallSnapshot{42, 7, CallState::kRinging, 99});
  const json expected = {
      {"type", "CallSnapshot"}, {"call", 42}, {"device", "PJSIP/dev-0007"}, {"state", "Ringing"}};
  EXPECT_EQ(JsonOf(m), expected.dump());
}

TEST(Messages, AnEventRendersAsNlohmannJsonWould) {
  const auto m = CallEventType().Make(
      CallEvent{18446744073709551615u, 3, EventKind::kTsxEnd, "408 Request Timeout", 1});
  const json expected = {{"type", "TsxEnd"},
                         {"call", 18446744073709551615u},
                         {"device", "PJSIP/dev-0003"},
                         {"detail", "408 Request Timeout"}};
  EXPECT_EQ(JsonOf(m), expected.dump());
}

TEST(Messages, ARecordRendersAsNlohmannJsonWould) {
  CallEnded c;
  c.call_id = 5;
  c.device = 12;
  c.disposition = "NO ANSWER";
  c.cause = "no-answer";
  c.refreshes = 2;
  c.start_us = 1764540000000000;
  c.answer_us = 0;
  c.end_us = -1;
  const json expected = {{"type", "CallEnded"},
                         {"call", 5},
                         {"device", "PJSIP/dev-0012"},
                         {"disposition", "NO ANSWER"},
                         {"cause", "no-answer"},
                         {"refreshes", 2},
                         {"start_us", 1764540000000000},
                         {"answer_us", 0},
                         {"end_us", -1}};
  EXPECT_EQ(JsonOf(CallEndedType().Make(c)), expected.dump());
}

TEST(Messages, StringsAreEscaped) {
  const char* detail = "say \"hi\"\\\n\t\x01";
  const auto m = CallEventType().Make(CallEvent{1, 1, EventKind::kAnswer, detail, 0});
  const json parsed = json::parse(JsonOf(m));
  EXPECT_EQ(parsed["detail"], detail);
  const json expected = {
      {"type", "Answer"}, {"call", 1}, {"device", "PJSIP/dev-0001"}, {"detail", detail}};
  EXPECT_EQ(JsonOf(m), expected.dump());
}

}  // namespace
}  // namespace sim
