// Formatters: a type without formatters renders neither JSON nor text, the JsonFormatter and
// TextFormatter helpers (plexus/bus/json.h) render a payload, only the formats given are
// available, and a formatter that throws or declines yields nothing (BUS12).

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/bus/json.h"

namespace plexus {
namespace {

using plexus_test::IntType;
using plexus_test::LogCapture;

// -----------------------------------------------------------------------------------------
// BUS12 Formatters
// -----------------------------------------------------------------------------------------

TEST(BusAcceptance, BUS12_NoFormatterYieldsNoJsonAndNoText) {
  static const auto kBare = TypedMessageType<std::string>::Create("BusAcceptance.BUS12.Bare");
  Ref<Message> m = kBare.Make("SomeData");
  ASSERT_NE(m, nullptr);
  std::optional<std::string> json;
  std::optional<std::string> text;
  EXPECT_NO_THROW(json = m->ToJson());
  EXPECT_NO_THROW(text = m->ToText());
  EXPECT_FALSE(json.has_value()) << *json;
  EXPECT_FALSE(text.has_value()) << *text;
}

TEST(BusAcceptance, BUS12_FormattersRenderThePayload) {
  static const auto kFormatted = TypedMessageType<std::string>::Create(
      "BusAcceptance.BUS12.Formatted",
      {.to_json =
           JsonFormatter<std::string>([](const std::string& s) { return nlohmann::json(s); }),
       .to_text = TextFormatter<std::string>([](const std::string& s) {
         return std::vector<std::pair<std::string, std::string>>{{"Data", s}};
       })});
  EXPECT_TRUE(kFormatted->HasFormat(MessageFormat::kJson));
  EXPECT_TRUE(kFormatted->HasFormat(MessageFormat::kText));
  EXPECT_EQ(kFormatted->AvailableFormats(), MessageFormat::kJson | MessageFormat::kText);
  Ref<Message> m = kFormatted.Make("SomeData");
  ASSERT_NE(m, nullptr);
  const std::optional<std::string> json = m->ToJson();
  ASSERT_TRUE(json.has_value());
  EXPECT_EQ(*json, "\"SomeData\"");
  EXPECT_EQ(nlohmann::json::parse(*json), nlohmann::json("SomeData"));
  const std::optional<std::string> text = m->ToText();
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text, "Data: SomeData\r\n");
}

TEST(BusAcceptance, BUS12_OnlyTheGivenFormatIsAvailable) {
  static const auto kJsonOnly = TypedMessageType<std::string>::Create(
      "BusAcceptance.BUS12.JsonOnly",
      {.to_json = JsonFormatter<std::string>([](const std::string& s) {
         return nlohmann::json{{"data", s}};
       })});
  Ref<Message> m = kJsonOnly.Make("SomeData");
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(m->ToJson().has_value());
  EXPECT_EQ(nlohmann::json::parse(*m->ToJson()), (nlohmann::json{{"data", "SomeData"}}));
  EXPECT_FALSE(m->ToText().has_value());
}

// -----------------------------------------------------------------------------------------
// Formatters of other payloads
// -----------------------------------------------------------------------------------------

struct Point {
  int x;
  int y;
};

TEST(BusUnit, JsonAndTextFormattersOfAStruct) {
  static const auto kPoint = TypedMessageType<Point>::Create(
      "BusUnit.Point", {.to_json = JsonFormatter<Point>([](const Point& p) {
                          return nlohmann::json{{"x", p.x}, {"y", p.y}};
                        }),
                        .to_text = TextFormatter<Point>([](const Point& p) {
                          return std::vector<std::pair<std::string, std::string>>{
                              {"X", std::to_string(p.x)}, {"Y", std::to_string(p.y)}};
                        })});
  Ref<Message> m = kPoint.Make(Point{3, -4});
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(m->ToJson().has_value());
  EXPECT_EQ(nlohmann::json::parse(*m->ToJson()), (nlohmann::json{{"x", 3}, {"y", -4}}));
  EXPECT_EQ(m->ToText(), std::optional<std::string>("X: 3\r\nY: -4\r\n"));
  // A formatter given a message of another payload renders nothing.
  Ref<Message> other = IntType().Make(1);
  EXPECT_FALSE(kPoint->Formatters().to_json(*other).has_value());
  EXPECT_FALSE(kPoint->Formatters().to_text(*other).has_value());
}

TEST(BusUnit, AThrowingFormatterYieldsNothing) {
  LogCapture capture;
  static const auto kThrows = TypedMessageType<int>::Create(
      "BusUnit.ThrowingFormatter",
      {.to_json = [](const Message&) -> std::optional<std::string> {
         throw std::runtime_error("formatter failed");
       },
       .to_text = [](const Message& m) -> std::optional<std::string> {
         if (*m.As<int>() < 0) return std::nullopt;
         return plexus_test::Cat({"N: ", std::to_string(*m.As<int>())});
       }});
  Ref<Message> m = kThrows.Make(-1);
  std::optional<std::string> json;
  EXPECT_NO_THROW(json = m->ToJson());
  EXPECT_FALSE(json.has_value());
  EXPECT_FALSE(m->ToText().has_value());  // declined for this message
  EXPECT_EQ(kThrows.Make(7)->ToText(), std::optional<std::string>("N: 7"));
  EXPECT_FALSE(capture.Records().empty());  // the throw was logged
}

}  // namespace
}  // namespace plexus
