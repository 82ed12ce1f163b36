// Subscription filters: a type filter passes only the accepted types and follows AcceptType,
// DeclineType and AcceptAllTypes for later messages; a format filter passes types that have a
// formatter of an accepted format, combines with the type filter by or, and kNone removes it;
// the final message passes every filter (BUS10, BUS11). Type filter cases run in each delivery
// mode.

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "bus/bus_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"

namespace plexus {
namespace {

using plexus_test::ChangeOf;
using plexus_test::Recorder;
using plexus_test::StringOf;
using plexus_test::Strings;
using ::testing::ElementsAre;

class SubscriptionFilterModes : public plexus_test::ModeTest {};

INSTANTIATE_TEST_SUITE_P(AllModes, SubscriptionFilterModes,
                         ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// BUS10 Type filter
// -----------------------------------------------------------------------------------------

struct FilterTypes {
  TypedMessageType<std::string> t1 = TypedMessageType<std::string>::Create("BusAcceptance.T1");
  TypedMessageType<std::string> t2 = TypedMessageType<std::string>::Create("BusAcceptance.T2");
  TypedMessageType<std::string> t3 = TypedMessageType<std::string>::Create("BusAcceptance.T3");
};

const FilterTypes& Bus10Types() {
  static const FilterTypes types;
  return types;
}

// "T1:pass" style labels of the recorded messages.
std::vector<std::string> Labels(const std::vector<Ref<Message>>& messages) {
  std::vector<std::string> out;
  for (const Ref<Message>& m : messages) {
    if (const SubscriptionChange* c = ChangeOf(*m)) {
      out.push_back(plexus_test::Cat({"<", c->Description(), ">"}));
    } else {
      std::string name = m->Type().Name();
      name = name.substr(name.rfind('.') + 1);
      out.push_back(plexus_test::Cat({name, ":", StringOf(*m)}));
    }
  }
  return out;
}

TEST_P(SubscriptionFilterModes, BUS10_TypeFilterIsSelective) {
  const FilterTypes& ty = Bus10Types();
  Ref<Topic> topic = Topic::Create("bus10-filter");
  Recorder rec;
  SubscriptionOptions opts = options();
  opts.accepted_types = {ty.t1.get(), ty.t2.get(), SubscriptionChangeType().get()};
  Subscription sub = Subscription::Create(topic, rec.Handler(), opts);

  EXPECT_EQ(topic->Publish(ty.t1, std::string("pass")).delivered, 1u);
  EXPECT_EQ(topic->Publish(ty.t2, std::string("pass")).delivered, 1u);
  const PublishResult refused = topic->Publish(ty.t3, std::string("fail"));
  EXPECT_EQ(refused.delivered, 0u);
  EXPECT_EQ(refused.filtered, 1u);
  sub.DeclineType(ty.t1.get());
  EXPECT_EQ(topic->Publish(ty.t1, std::string("fail")).filtered, 1u);
  EXPECT_EQ(topic->Publish(ty.t2, std::string("pass2")).delivered, 1u);
  EXPECT_EQ(topic->Publish(ty.t3, std::string("fail")).filtered, 1u);
  ASSERT_TRUE(sub.Unsubscribe());
  ASSERT_TRUE(rec.WaitForFinal());
  ASSERT_TRUE(sub.Join());

  EXPECT_THAT(Labels(rec.Messages()),
              ElementsAre("<Subscribe>", "T1:pass", "T2:pass", "T2:pass2", "<Unsubscribe>"));
  EXPECT_EQ(sub.Stats().filtered, 3u);
}

TEST_P(SubscriptionFilterModes, BUS10_AcceptTypeAfterSubscribeAffectsLaterMessages) {
  const FilterTypes& ty = Bus10Types();
  Ref<Topic> topic = Topic::Create("bus10-later");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler(), options());
  ASSERT_TRUE(rec.WaitForCount(1));  // the subscribe notice, before any filter
  topic->Publish(ty.t3, std::string("unfiltered"));
  sub.AcceptType(ty.t1.get());  // selective from now on: T3 and notices no longer pass
  topic->Publish(ty.t1, std::string("pass"));
  topic->Publish(ty.t3, std::string("fail"));
  sub.AcceptAllTypes();
  topic->Publish(ty.t3, std::string("all again"));
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_THAT(Labels(rec.Messages()), ElementsAre("<Subscribe>", "T3:unfiltered", "T1:pass",
                                                  "T3:all again", "<Unsubscribe>"));
}

// -----------------------------------------------------------------------------------------
// BUS11 Filter rules
// -----------------------------------------------------------------------------------------

struct FormatTypes {
  static std::optional<std::string> Json(const Message& m) {
    return plexus_test::Cat({"\"", StringOf(m), "\""});
  }
  static std::optional<std::string> Text(const Message& m) {
    return plexus_test::Cat({"Data: ", StringOf(m)});
  }
  TypedMessageType<std::string> accepted =
      TypedMessageType<std::string>::Create("BusAcceptance.F.Accepted");
  TypedMessageType<std::string> json =
      TypedMessageType<std::string>::Create("BusAcceptance.F.Json", {.to_json = &Json});
  TypedMessageType<std::string> text =
      TypedMessageType<std::string>::Create("BusAcceptance.F.Text", {.to_text = &Text});
  TypedMessageType<std::string> plain =
      TypedMessageType<std::string>::Create("BusAcceptance.F.Plain");
};

const FormatTypes& Bus11Types() {
  static const FormatTypes types;
  return types;
}

TEST(BusAcceptance, BUS11_TypeAndFormatFiltersCombineByOr) {
  const FormatTypes& ty = Bus11Types();
  ASSERT_TRUE(ty.json->HasFormat(MessageFormat::kJson));
  ASSERT_FALSE(ty.json->HasFormat(MessageFormat::kText));
  ASSERT_TRUE(ty.text->HasFormat(MessageFormat::kText));
  Ref<Topic> topic = Topic::Create("bus11-or");
  Recorder rec = Recorder::IgnoringChanges();
  SubscriptionOptions opts;
  opts.accepted_types = {ty.accepted.get()};
  opts.accepted_formats = MessageFormat::kJson;
  Subscription sub = Subscription::Create(topic, rec.Handler(), opts);

  topic->Publish(ty.accepted, std::string("accepted type"));
  topic->Publish(ty.json, std::string("json format"));
  topic->Publish(ty.text, std::string("text: refused"));
  topic->Publish(ty.plain, std::string("plain: refused"));
  // Replacing the format set: JSON no longer passes, text does.
  sub.SetAcceptedFormats(MessageFormat::kText);
  topic->Publish(ty.accepted, std::string("accepted type 2"));
  topic->Publish(ty.json, std::string("json: refused"));
  topic->Publish(ty.text, std::string("text format"));
  topic->Publish(ty.plain, std::string("plain: refused"));
  // Both formats.
  sub.SetAcceptedFormats(MessageFormat::kJson | MessageFormat::kText);
  topic->Publish(ty.json, std::string("json again"));
  topic->Publish(ty.text, std::string("text again"));
  topic->Publish(ty.plain, std::string("plain: refused"));
  ASSERT_TRUE(sub.Unsubscribe());
  ASSERT_TRUE(rec.WaitForFinal());  // the final message passes the filters
  ASSERT_TRUE(sub.Join());
  EXPECT_THAT(Strings(rec.Messages()),
              ElementsAre("accepted type", "json format", "accepted type 2", "text format",
                          "json again", "text again"));
}

TEST(BusAcceptance, BUS11_FormatFilterAloneAndNoFilter) {
  const FormatTypes& ty = Bus11Types();
  Ref<Topic> topic = Topic::Create("bus11-formats");
  Recorder only_json = Recorder::IgnoringChanges();
  Recorder everything = Recorder::IgnoringChanges();
  SubscriptionOptions json_opts;
  json_opts.accepted_formats = MessageFormat::kJson;
  Subscription a = Subscription::Create(topic, only_json.Handler(), json_opts);
  Subscription b = Subscription::Create(topic, everything.Handler());
  topic->Publish(ty.accepted, std::string("accepted"));
  topic->Publish(ty.json, std::string("json"));
  topic->Publish(ty.text, std::string("text"));
  topic->Publish(ty.plain, std::string("plain"));
  // kNone removes the format filter: everything passes again.
  a.SetAcceptedFormats(MessageFormat::kNone);
  topic->Publish(ty.plain, std::string("plain after"));
  ASSERT_TRUE(a.UnsubscribeAndJoin());
  ASSERT_TRUE(b.UnsubscribeAndJoin());
  EXPECT_THAT(Strings(only_json.Messages()), ElementsAre("json", "plain after"));
  EXPECT_THAT(Strings(everything.Messages()),
              ElementsAre("accepted", "json", "text", "plain", "plain after"));
  EXPECT_TRUE(only_json.IsComplete());
}

TEST(BusAcceptance, BUS11_FinalMessagePassesEveryFilter) {
  const FormatTypes& ty = Bus11Types();
  Ref<Topic> topic = Topic::Create("bus11-final");
  Recorder rec;  // records notices: the final message must be there although not accepted
  SubscriptionOptions opts;
  opts.accepted_types = {ty.plain.get()};
  opts.accepted_formats = MessageFormat::kText;
  Subscription sub = Subscription::Create(topic, rec.Handler(), opts);
  const std::string id = sub.Id();
  topic->Publish(ty.plain, std::string("plain"));
  ASSERT_TRUE(sub.Unsubscribe());
  ASSERT_TRUE(rec.WaitForFinal());
  ASSERT_TRUE(sub.Join());
  const std::vector<Ref<Message>> got = rec.Messages();
  // The subscribe notice was filtered (the change type is not accepted and has no text
  // formatter, or it passed by its format); the final message is last either way.
  ASSERT_FALSE(got.empty());
  EXPECT_TRUE(IsFinalMessage(*got.back(), id));
  EXPECT_EQ(rec.FinalCount(), 1);
  EXPECT_EQ(std::count_if(got.begin(), got.end(),
                          [](const Ref<Message>& m) { return StringOf(*m) == "plain"; }),
            1);
}

}  // namespace
}  // namespace plexus
