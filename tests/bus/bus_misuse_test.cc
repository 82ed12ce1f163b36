// Misuse of the bus API as a whole: each entry point (Subscription::Create, Subscribe, Publish,
// MessageType::Create, Message::Create, TopicPool, ForwardAll) reports a misuse at the caller's
// line, and under MisuseAction::kLog returns its failure value instead.

#include <cstdint>
#include <string>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/misuse.h"

namespace plexus {
namespace {

using plexus_test::IntType;
using plexus_test::ScopedMisuseAction;

TEST(BusUnit, MisuseIsReportedAtTheCallersLine) {
  Ref<Topic> topic = Topic::Create("unit-misuse");
  const MessageHandler handler = [](const Message&, bool) {};
  PLEXUS_EXPECT_MISUSE_HERE(Subscription::Create(nullptr, handler));
  PLEXUS_EXPECT_MISUSE_HERE(Subscription::Create(topic, MessageHandler()));
  PLEXUS_EXPECT_MISUSE_HERE(Subscribe(Ref<Topic>(), [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(topic->Publish(Ref<Message>()));
  PLEXUS_EXPECT_MISUSE_HERE(MessageType::Create(""));
  PLEXUS_EXPECT_MISUSE_HERE(MessageType::CreateFor(typeid(int), ""));
  PLEXUS_EXPECT_MISUSE_HERE(Message::Create(IntType().get(), std::string("wrong payload")));
  PLEXUS_EXPECT_MISUSE_HERE(TopicPool::Create(nullptr));
  PLEXUS_EXPECT_MISUSE_HERE(TopicPool::Create(topic)->Get(""));
  PLEXUS_EXPECT_MISUSE_HERE(ForwardAll(nullptr, topic));
  PLEXUS_EXPECT_MISUSE_HERE(ForwardAll(topic, nullptr));
  EXPECT_EQ(topic->SubscriberCount(), 0u);
}

TEST(BusUnit, MisuseUnderLogReturnsTheFailureValue) {
  ScopedMisuseAction log(MisuseAction::kLog);
  Ref<Topic> topic = Topic::Create("unit-misuse-log");
  const std::uint64_t before = MisuseReportCount();
  EXPECT_FALSE(Subscription::Create(nullptr, [](const Message&, bool) {}));
  EXPECT_FALSE(Subscription::Create(topic, MessageHandler()));
  const PublishResult r = topic->Publish(Ref<Message>());
  EXPECT_EQ(r.delivered + r.filtered + r.rejected + r.dropped, 0u);
  EXPECT_EQ(TopicPool::Create(nullptr), nullptr);
  EXPECT_FALSE(ForwardAll(nullptr, topic).IsActive());
  EXPECT_EQ(MisuseReportCount(), before + 5);
}

}  // namespace
}  // namespace plexus
