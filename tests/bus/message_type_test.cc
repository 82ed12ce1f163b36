// MessageType: a type is made with a non-empty name (an empty one is reported misuse), reports
// its name, id and formats, is listed among all types, and a declined type makes and delivers no
// message (BUS01).

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/misuse.h"

namespace plexus {
namespace {

using plexus_test::LogCapture;
using plexus_test::Recorder;
using plexus_test::ScopedMisuseAction;

// -----------------------------------------------------------------------------------------
// BUS01 Message types
// -----------------------------------------------------------------------------------------

TEST(BusAcceptance, BUS01_EmptyTypeNameIsReportedMisuse) {
  PLEXUS_EXPECT_MISUSE_HERE(MessageType::Create(""));
  PLEXUS_EXPECT_MISUSE_HERE(TypedMessageType<int>::Create(""));

  ScopedMisuseAction log(MisuseAction::kLog);
  LogCapture capture;
  const int line = __LINE__ + 1;
  const MessageType* type = MessageType::Create("");
  EXPECT_EQ(type, nullptr);
  EXPECT_TRUE(plexus_test::LoggedAt(capture, __FILE__, line)) << capture.Text();
  EXPECT_FALSE(TypedMessageType<int>::Create(""));
}

TEST(BusAcceptance, BUS01_TypeWithoutFormattersReportsItsName) {
  const std::uint64_t misuse_before = MisuseReportCount();
  const MessageType* type = MessageType::Create("SomeMessage");
  ASSERT_NE(type, nullptr);
  EXPECT_EQ(type->Name(), "SomeMessage");
  EXPECT_FALSE(type->IsDeclined());
  EXPECT_EQ(type->AvailableFormats(), MessageFormat::kNone);
  EXPECT_FALSE(type->HasFormat(MessageFormat::kJson));
  EXPECT_FALSE(type->HasFormat(MessageFormat::kText));
  EXPECT_EQ(type->PayloadType(), nullptr);
  EXPECT_EQ(MisuseReportCount(), misuse_before);
  const std::vector<const MessageType*> all = MessageType::All();
  EXPECT_NE(std::find(all.begin(), all.end(), type), all.end());
  ASSERT_LT(type->Id(), all.size());
  EXPECT_EQ(all[type->Id()], type);
}

// -----------------------------------------------------------------------------------------
// Declined types
// -----------------------------------------------------------------------------------------

TEST(BusUnit, DeclinedTypesMakeAndDeliverNothing) {
  const auto existing = TypedMessageType<int>::Create("BusUnit.DeclinedLater");
  DeclineMessageTypes({"BusUnit.Declined", "BusUnit.DeclinedLater"});
  plexus_test::ScopeExit clear([] { ClearDeclinedMessageTypes(); });
  const auto declined = TypedMessageType<int>::Create("BusUnit.Declined");
  ASSERT_TRUE(declined);
  EXPECT_TRUE(declined->IsDeclined());
  EXPECT_FALSE(existing->IsDeclined());  // made before the decline

  const std::uint64_t misuse_before = MisuseReportCount();
  EXPECT_EQ(declined.Make(1), nullptr);
  EXPECT_EQ(Message::Create(declined.get(), 2), nullptr);
  EXPECT_EQ(MisuseReportCount(), misuse_before);  // silently

  Ref<Topic> topic = Topic::Create("unit-declined");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(topic, rec.Handler());
  const PublishResult r = topic->Publish(declined, 3);
  EXPECT_EQ(r.delivered + r.filtered + r.rejected + r.dropped, 0u);
  EXPECT_EQ(topic->Publish(existing, 4).delivered, 1u);
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  ASSERT_EQ(rec.Count(), 1u);
  EXPECT_EQ(*existing.Get(*rec.Messages()[0]), 4);

  ClearDeclinedMessageTypes();
  const auto again = TypedMessageType<int>::Create("BusUnit.Declined");
  EXPECT_FALSE(again->IsDeclined());
  EXPECT_TRUE(declined->IsDeclined());  // existing types keep their state
  EXPECT_NE(again.Make(5), nullptr);
}

}  // namespace
}  // namespace plexus
