// Bus statistics: the counters of a topic and of its subscriptions (published, deliveries,
// forwarded, dispatched, queued, filtered, depth and highest depth), the same numbers in the
// listings of live topics and subscriptions, and the BusStatsText rendering (BUS17). Counter
// cases run in each delivery mode.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"

namespace plexus {
namespace {

using plexus_test::Gate;
using plexus_test::IntType;
using plexus_test::ListedTopic;
using plexus_test::Recorder;
using plexus_test::StringType;
using plexus_test::WaitUntil;
using ::testing::HasSubstr;

class BusStatsModes : public plexus_test::ModeTest {};

INSTANTIATE_TEST_SUITE_P(AllModes, BusStatsModes, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// BUS17 Statistics
// -----------------------------------------------------------------------------------------

TEST_P(BusStatsModes, BUS17_TopicAndSubscriptionCounters) {
  constexpr int kSubscribers = 3;
  constexpr int kMessages = 40;
  Ref<Topic> topic = Topic::Create("bus17-stats", "statistics test");
  std::vector<Recorder> recs;
  std::vector<Subscription> subs;
  for (int i = 0; i < kSubscribers; ++i) {
    recs.push_back(Recorder());
    subs.push_back(Subscription::Create(topic, recs.back().Handler(), options()));
  }
  // Each subscriber sees its own subscribe notice only (the others' go to listeners).
  for (int i = 0; i < kSubscribers; ++i) {
    ASSERT_TRUE(recs[static_cast<std::size_t>(i)].WaitForCount(1));
  }
  const TopicStats before = topic->Stats();
  EXPECT_EQ(before.name, "bus17-stats");
  EXPECT_EQ(before.description, "statistics test");
  EXPECT_EQ(before.id, topic->Id());
  EXPECT_EQ(before.subscribers, static_cast<std::size_t>(kSubscribers));
  std::vector<SubscriptionStats> sub_before;
  for (int i = 0; i < kSubscribers; ++i) {
    // The recorder saw the notices inside the callbacks; dispatched counts them once the
    // callbacks returned.
    const Subscription& s = subs[static_cast<std::size_t>(i)];
    ASSERT_TRUE(WaitUntil([&] { return s.Stats().dispatched == 1u; }));
    sub_before.push_back(s.Stats());
  }

  for (int n = 0; n < kMessages; ++n) topic->Publish(IntType(), n);
  for (int i = 0; i < kSubscribers; ++i) {
    ASSERT_TRUE(
        recs[static_cast<std::size_t>(i)].WaitForCount(static_cast<std::size_t>(1 + kMessages)));
  }
  const TopicStats after = topic->Stats();
  EXPECT_EQ(after.published - before.published, static_cast<std::uint64_t>(kMessages));
  EXPECT_EQ(after.deliveries - before.deliveries,
            static_cast<std::uint64_t>(kMessages * kSubscribers));
  EXPECT_EQ(after.forwarded_in, 0u);
  for (int i = 0; i < kSubscribers; ++i) {
    SCOPED_TRACE(i);
    const Subscription& s = subs[static_cast<std::size_t>(i)];
    // dispatched counts the callbacks that ran: wait until the last one has returned.
    ASSERT_TRUE(WaitUntil([&] {
      return s.Stats().dispatched == static_cast<std::uint64_t>(1 + kMessages);
    })) << s.Stats().dispatched;
    const SubscriptionStats st = s.Stats();
    EXPECT_EQ(st.id, s.Id());
    EXPECT_EQ(st.topic, "bus17-stats");
    EXPECT_EQ(st.mode, mode());
    EXPECT_EQ(st.dispatched - sub_before[static_cast<std::size_t>(i)].dispatched,
              static_cast<std::uint64_t>(kMessages));
    EXPECT_EQ(st.queued - sub_before[static_cast<std::size_t>(i)].queued,
              static_cast<std::uint64_t>(kMessages));
    EXPECT_EQ(st.filtered, 0u);
    EXPECT_EQ(st.failed, 0u);
    EXPECT_EQ(st.dropped, 0u);
    EXPECT_EQ(st.rejected, 0u);
    EXPECT_EQ(st.depth, 0u);
    EXPECT_TRUE(st.subscribed);
    EXPECT_FALSE(st.done);
    EXPECT_FALSE(st.alerted);
    // The listing shows the same counters.
    const std::optional<SubscriptionStats> listed = plexus_test::ListedSubscription(s.Id());
    ASSERT_TRUE(listed.has_value());
    EXPECT_EQ(listed->dispatched, st.dispatched);
    EXPECT_EQ(listed->topic, "bus17-stats");
  }
  const std::optional<TopicStats> listed_topic = ListedTopic(topic->Id());
  ASSERT_TRUE(listed_topic.has_value());
  EXPECT_EQ(listed_topic->published, after.published);
  EXPECT_EQ(listed_topic->subscribers, static_cast<std::size_t>(kSubscribers));

  for (std::size_t i = 0; i < subs.size(); ++i) {
    ASSERT_TRUE(subs[i].UnsubscribeAndJoin());
    const SubscriptionStats st = subs[i].Stats();
    EXPECT_FALSE(st.subscribed);
    EXPECT_TRUE(st.done);
    // Every callback counted, notices and the final message included.
    EXPECT_EQ(st.dispatched, recs[i].CallbackCount());
  }
  EXPECT_EQ(topic->Stats().subscribers, 0u);
}

TEST_P(BusStatsModes, BUS17_QueueDepthAndHighestDepth) {
  if (synchronous()) GTEST_SKIP() << "a synchronous subscription has no queue";
  constexpr int kQueued = 25;
  Ref<Topic> topic = Topic::Create("bus17-depth");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  Recorder rec = Recorder::IgnoringChanges();
  Ref<Message> blocker = StringType().Make("block");
  const Message* blocker_ptr = blocker.get();
  Subscription sub = Subscription::Create(
      topic,
      [rec, wait, blocker_ptr](const Message& m, bool is_final) {
        if (&m == blocker_ptr) wait();
        rec.Receive(m, is_final);
      },
      options());
  ASSERT_TRUE(WaitUntil([&] { return sub.Stats().dispatched >= 1; }));  // the subscribe notice
  topic->Publish(blocker);
  ASSERT_TRUE(gate.WaitForArrivals(1));
  for (int n = 0; n < kQueued; ++n) topic->Publish(IntType(), n);
  const SubscriptionStats blocked = sub.Stats();
  // kQueued waiting, and the blocker being handled.
  EXPECT_EQ(blocked.depth, static_cast<std::size_t>(kQueued + 1));
  EXPECT_EQ(blocked.max_depth, static_cast<std::size_t>(kQueued + 1));
  EXPECT_EQ(blocked.dropped, 0u);
  gate.Open();
  ASSERT_TRUE(rec.WaitForCount(kQueued + 1));
  ASSERT_TRUE(WaitUntil([&] { return sub.Stats().depth == 0; }));
  EXPECT_EQ(sub.Stats().max_depth, static_cast<std::size_t>(kQueued + 1));
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
}

// Two messages taken in one batch: while the second is being handled, the first (handled
// already) no longer counts in the depth.
TEST(BusUnit, DepthCountsOnlyWaitingAndInHandMessages) {
  for (DeliveryMode mode : {DeliveryMode::kPool, DeliveryMode::kDedicatedThread}) {
    SCOPED_TRACE(plexus_test::ModeName(mode));
    Ref<Topic> topic = Topic::Create("unit-depth");
    Gate first_gate;
    Gate second_gate;
    Gate::Waiter first = first_gate.waiter();
    Gate::Waiter second = second_gate.waiter();
    Recorder rec = Recorder::IgnoringChanges();
    Subscription sub = Subscription::Create(
        topic,
        [rec, first, second](const Message& m, bool is_final) {
          if (const SubscriptionChange* c = plexus_test::ChangeOf(m);
              c != nullptr && c->kind == SubscriptionChangeKind::kSubscribe) {
            first();  // held on the subscribe notice while two messages queue up
          }
          if (const int* v = IntType().Get(m); v != nullptr && *v == 2) second();
          rec.Receive(m, is_final);
        },
        plexus_test::InMode(mode));
    ASSERT_TRUE(first_gate.WaitForArrivals(1));
    topic->Publish(IntType(), 1);
    topic->Publish(IntType(), 2);
    first_gate.Open();
    ASSERT_TRUE(second_gate.WaitForArrivals(1));  // 1 was handled, 2 is being handled
    EXPECT_EQ(rec.Count(), 1u);
    EXPECT_EQ(sub.Stats().depth, 1u);
    second_gate.Open();
    ASSERT_TRUE(sub.UnsubscribeAndJoin());
  }
}

TEST(BusAcceptance, BUS17_ForwardedCountsOnTheParent) {
  Ref<Topic> parent = Topic::Create("bus17-parent");
  Ref<Topic> child = Topic::Create("bus17-child");
  Forward f = ForwardAll(child, parent);
  const TopicStats p0 = parent->Stats();
  const TopicStats c0 = child->Stats();
  EXPECT_EQ(c0.forwards_out, 1u);
  for (int n = 0; n < 7; ++n) child->Publish(IntType(), n);
  EXPECT_EQ(child->Stats().published - c0.published, 7u);
  EXPECT_EQ(parent->Stats().forwarded_in - p0.forwarded_in, 7u);
  EXPECT_EQ(parent->Stats().published - p0.published, 0u);
}

// -----------------------------------------------------------------------------------------
// Listings
// -----------------------------------------------------------------------------------------

TEST(BusUnit, ListingsNameTopicsAndSubscriptions) {
  Ref<Topic> topic = Topic::Create("unit-listed-topic", "listed here");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler());
  const std::size_t topics = LiveTopicCount();
  const std::size_t subs = LiveSubscriptionCount();
  EXPECT_GE(topics, 1u);
  EXPECT_GE(subs, 1u);
  const std::optional<TopicStats> t = plexus_test::ListedTopic(topic->Id());
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->name, "unit-listed-topic");
  EXPECT_EQ(t->description, "listed here");
  EXPECT_EQ(t->subscribers, 1u);
  const std::optional<SubscriptionStats> s = plexus_test::ListedSubscription(sub.Id());
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->topic, "unit-listed-topic");
  EXPECT_TRUE(s->subscribed);
  const std::string text = BusStatsText();
  EXPECT_THAT(text, HasSubstr("unit-listed-topic"));
  EXPECT_THAT(text, HasSubstr(sub.Id()));
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  rec.Clear();  // the notices hold the topic
  plexus_test::Drop(sub);
  const std::uint64_t id = topic->Id();
  topic = nullptr;
  EXPECT_TRUE(plexus_test::WaitForTopicGone(id));
  EXPECT_THAT(BusStatsText(), ::testing::Not(HasSubstr("unit-listed-topic")));
}

}  // namespace
}  // namespace plexus
