// The life of a subscription: no message after unsubscribe while the others keep receiving,
// unsubscribing twice or from the own callback, joining (never before unsubscribing nor from the
// own callback, where it is reported misuse instead of hanging), the final message as the last
// callback while publishers run, and the topic, subscription and forward references dropped in
// any order without a leak (BUS07, BUS13, BUS14). Delivery cases run in each delivery mode.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/misuse.h"

namespace plexus {
namespace {

using plexus_test::InMode;
using plexus_test::ListedTopic;
using plexus_test::LogCapture;
using plexus_test::Recorder;
using plexus_test::ScopedMisuseAction;
using plexus_test::ScopeExit;
using plexus_test::Seq;
using plexus_test::SeqType;
using plexus_test::StringOf;
using plexus_test::Strings;
using plexus_test::StringType;
using plexus_test::WaitUntil;
using ::testing::ElementsAre;

class SubscriptionLifecycleModes : public plexus_test::ModeTest {};

INSTANTIATE_TEST_SUITE_P(AllModes, SubscriptionLifecycleModes,
                         ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// BUS07 Unsubscribe stops messages
// -----------------------------------------------------------------------------------------

TEST_P(SubscriptionLifecycleModes, BUS07_NoMessageAfterUnsubscribe) {
  Ref<Topic> topic = Topic::Create("bus07-stop");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler(), options());
  ASSERT_TRUE(sub.Unsubscribe());
  Ref<Message> msg = StringType().Make("too late");
  const PublishResult result = topic->Publish(msg);
  EXPECT_EQ(result.delivered, 0u);
  ASSERT_TRUE(rec.WaitForFinal());
  ASSERT_TRUE(sub.Join());
  EXPECT_FALSE(rec.Contains(msg.get()));
  EXPECT_THAT(Strings(rec.Messages()), ElementsAre("<Subscribe>", "<Unsubscribe>"));
  EXPECT_EQ(topic->SubscriberCount(), 0u);
}

TEST_P(SubscriptionLifecycleModes, BUS07_OtherSubscribersKeepReceiving) {
  Ref<Topic> topic = Topic::Create("bus07-others");
  Recorder gone = Recorder::IgnoringChanges();
  Recorder stays = Recorder::IgnoringChanges();
  Subscription a = Subscription::Create(topic, gone.Handler(), options());
  Subscription b = Subscription::Create(topic, stays.Handler(), options());
  EXPECT_EQ(topic->SubscriberCount(), 2u);
  ASSERT_TRUE(a.UnsubscribeAndJoin());
  EXPECT_EQ(topic->SubscriberCount(), 1u);
  Ref<Message> msg = StringType().Make("later");
  EXPECT_EQ(topic->Publish(msg).delivered, 1u);
  ASSERT_TRUE(b.UnsubscribeAndJoin());
  EXPECT_FALSE(gone.Contains(msg.get()));
  EXPECT_TRUE(stays.Contains(msg.get()));
}

TEST(BusUnit, UnsubscribeTwiceIsANoOp) {
  Ref<Topic> topic = Topic::Create("unit-unsub-twice");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler());
  const std::uint64_t misuse_before = MisuseReportCount();
  EXPECT_TRUE(sub.Unsubscribe());
  EXPECT_FALSE(sub.Unsubscribe());
  EXPECT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_FALSE(sub.Unsubscribe());
  EXPECT_EQ(MisuseReportCount(), misuse_before);
  EXPECT_EQ(rec.FinalCount(), 1);
  EXPECT_EQ(rec.Count(), 2u);  // one subscribe, one unsubscribe notice
}

TEST(BusUnit, UnsubscribeFromOwnCallbackIsAllowed) {
  for (DeliveryMode mode : plexus_test::AllModes()) {
    SCOPED_TRACE(plexus_test::ModeName(mode));
    Ref<Topic> topic = Topic::Create("unit-self-unsub");
    Recorder rec = Recorder::IgnoringChanges();
    Subscription* handle = nullptr;
    std::atomic<int> result{-1};
    const std::uint64_t misuse_before = MisuseReportCount();
    Subscription sub = Subscription::Create(
        topic,
        [&, rec](const Message& m, bool is_final) {
          rec.Receive(m, is_final);
          if (StringOf(m) == "leave") result = handle->Unsubscribe() ? 1 : 0;
        },
        plexus_test::InMode(mode));
    handle = &sub;
    topic->Publish(StringType().Make("leave"));
    ASSERT_TRUE(rec.WaitForFinal());
    EXPECT_TRUE(sub.Join());
    EXPECT_EQ(result.load(), 1);
    EXPECT_EQ(MisuseReportCount(), misuse_before);
    EXPECT_EQ(rec.Count(), 1u);
  }
}

// -----------------------------------------------------------------------------------------
// Join
// -----------------------------------------------------------------------------------------

TEST(BusUnit, JoinBeforeUnsubscribeIsMisuse) {
  Ref<Topic> topic = Topic::Create("unit-join-early");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler());
  PLEXUS_EXPECT_MISUSE_HERE(sub.Join());
  {
    ScopedMisuseAction log(MisuseAction::kLog);
    EXPECT_FALSE(sub.Join());
  }
  EXPECT_TRUE(sub.IsSubscribed());  // nothing changed
  EXPECT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_TRUE(sub.Join());  // done: true at once
}

TEST(BusUnit, UnsubscribeAndJoinFromOwnCallbackIsMisuseNotAHang) {
  ScopedMisuseAction log(MisuseAction::kLog);
  for (DeliveryMode mode : plexus_test::AllModes()) {
    SCOPED_TRACE(plexus_test::ModeName(mode));
    Ref<Topic> topic = Topic::Create("unit-self-unsub-join");
    Recorder rec = Recorder::IgnoringChanges();
    Subscription* handle = nullptr;
    std::atomic<int> result{-1};
    const std::uint64_t misuse_before = MisuseReportCount();
    Subscription sub = Subscription::Create(
        topic,
        [&, rec](const Message& m, bool is_final) {
          if (StringOf(m) == "leave") result = handle->UnsubscribeAndJoin() ? 1 : 0;
          rec.Receive(m, is_final);
        },
        plexus_test::InMode(mode));
    handle = &sub;
    topic->Publish(StringType().Make("leave"));
    ASSERT_TRUE(rec.WaitForCount(1));
    EXPECT_EQ(result.load(), 0);
    EXPECT_EQ(MisuseReportCount(), misuse_before + 1);
    sub.Unsubscribe();  // whether or not the inner call unsubscribed
    ASSERT_TRUE(rec.WaitForFinal());
    EXPECT_TRUE(sub.Join());
    EXPECT_EQ(rec.FinalCount(), 1);
  }
}

TEST(BusUnit, IsDoneIsTrueInsideTheFinalCallback) {
  for (DeliveryMode mode : plexus_test::AllModes()) {
    SCOPED_TRACE(plexus_test::ModeName(mode));
    Ref<Topic> topic = Topic::Create("unit-is-done");
    Subscription* handle = nullptr;
    std::atomic<int> done_in_final{-1};
    Recorder rec;
    Subscription sub = Subscription::Create(
        topic,
        [&, rec](const Message& m, bool is_final) {
          if (is_final) done_in_final = handle->IsDone() ? 1 : 0;
          rec.Receive(m, is_final);
        },
        plexus_test::InMode(mode));
    handle = &sub;
    EXPECT_FALSE(sub.IsDone());
    ASSERT_TRUE(sub.UnsubscribeAndJoin());
    EXPECT_EQ(done_in_final.load(), 1);
    EXPECT_TRUE(sub.IsDone());
  }
}

// -----------------------------------------------------------------------------------------
// BUS13 Lifetimes in any order
// -----------------------------------------------------------------------------------------

TEST(BusAcceptance, BUS13_DropTopicFirstThenUnsubscribe) {
  for (DeliveryMode mode : plexus_test::AllModes()) {
    SCOPED_TRACE(plexus_test::ModeName(mode));
    Ref<Topic> topic = Topic::Create("bus13-topic-first");
    const std::uint64_t topic_id = topic->Id();
    Recorder rec;
    Subscription sub = Subscription::Create(topic, rec.Handler(), InMode(mode));
    const std::string sub_id = sub.Id();
    Ref<Message> msg = StringType().Make("kept alive by the subscription");
    topic->Publish(msg);
    topic = nullptr;  // the subscription still holds the topic
    ASSERT_TRUE(ListedTopic(topic_id).has_value());
    EXPECT_EQ(sub.GetTopic()->Id(), topic_id);
    ASSERT_TRUE(sub.Unsubscribe());
    ASSERT_TRUE(rec.WaitForFinal());
    ASSERT_TRUE(sub.Join());
    EXPECT_TRUE(rec.Contains(msg.get()));
    EXPECT_EQ(rec.FinalCount(), 1);
    plexus_test::Drop(sub);
    rec.Clear();  // the recorded notices hold the topic
    // No leak: both are gone once every holder let go.
    EXPECT_TRUE(plexus_test::WaitForTopicGone(topic_id));
    EXPECT_TRUE(plexus_test::WaitForSubscriptionGone(sub_id));
  }
}

// Builds a topic, a subscription on it, and a parent topic it forwards into, then drops the
// four references in the order given (0: topic, 1: subscription handle, 2: forward, 3: parent).
void DropInOrder(const std::vector<int>& order, DeliveryMode mode) {
  Ref<Topic> parent = Topic::Create("bus13-parent");
  Ref<Topic> topic = Topic::Create("bus13-topic");
  const std::uint64_t parent_id = parent->Id();
  const std::uint64_t topic_id = topic->Id();
  Forward forward = ForwardAll(topic, parent);
  Recorder rec;
  Recorder parent_rec;
  Subscription sub = Subscription::Create(topic, rec.Handler(), InMode(mode));
  Subscription parent_sub = Subscription::Create(parent, parent_rec.Handler(), InMode(mode));
  const std::string sub_id = sub.Id();
  topic->Publish(StringType().Make("something"));
  for (int what : order) {
    switch (what) {
      case 0:
        topic = nullptr;
        break;
      case 1:
        plexus_test::Drop(sub);  // unsubscribes without waiting
        break;
      case 2:
        forward = Forward();
        break;
      case 3:
        parent = nullptr;
        break;
    }
  }
  ASSERT_TRUE(rec.WaitForFinal());
  EXPECT_EQ(rec.FinalCount(), 1);
  plexus_test::Drop(parent_sub);
  ASSERT_TRUE(parent_rec.WaitForFinal());
  rec.Clear();  // the recorded notices hold their topics
  parent_rec.Clear();
  EXPECT_TRUE(plexus_test::WaitForTopicGone(topic_id));
  EXPECT_TRUE(plexus_test::WaitForTopicGone(parent_id));
  EXPECT_TRUE(plexus_test::WaitForSubscriptionGone(sub_id));
  EXPECT_EQ(rec.AfterFinalCount(), 0);
}

TEST(BusAcceptance, BUS13_DropReferencesInAnyOrder) {
  for (DeliveryMode mode : plexus_test::AllModes()) {
    std::vector<int> order = {0, 1, 2, 3};
    do {
      SCOPED_TRACE(plexus_test::Cat(
          {plexus_test::ModeName(mode), " order ", ::testing::PrintToString(order)}));
      DropInOrder(order, mode);
      if (HasFatalFailure()) return;
    } while (std::next_permutation(order.begin(), order.end()));
  }
}

// -----------------------------------------------------------------------------------------
// BUS14 Final message is last
// -----------------------------------------------------------------------------------------

TEST_P(SubscriptionLifecycleModes, BUS14_FinalIsLastWhilePublishersRun) {
  Ref<Topic> topic = Topic::Create("bus14-last");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler(), options());
  std::atomic<bool> stop{false};
  std::atomic<bool> joined{false};
  std::atomic<int> late_published{0};
  std::vector<std::thread> publishers;
  for (int p = 0; p < 3; ++p) {
    publishers.emplace_back([&, p] {
      int n = 0;
      while (!stop.load()) {
        topic->Publish(SeqType(), Seq{p, n++});
        if (joined.load()) late_published.fetch_add(1);
      }
    });
  }
  ScopeExit stop_publishers([&] {
    stop = true;
    for (std::thread& t : publishers) t.join();
  });
  ASSERT_TRUE(rec.WaitForCount(50));
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  joined = true;
  // Join returned only after the final message was handled.
  EXPECT_TRUE(rec.IsComplete());
  EXPECT_EQ(rec.FinalCount(), 1);
  const std::size_t at_join = rec.CallbackCount();
  // Publishers keep going after the join: nothing more may arrive.
  ASSERT_TRUE(WaitUntil([&] { return late_published.load() >= 300; }));
  stop = true;
  for (std::thread& t : publishers) t.join();
  publishers.clear();
  EXPECT_EQ(rec.CallbackCount(), at_join);
  EXPECT_EQ(rec.AfterFinalCount(), 0);
  EXPECT_EQ(rec.OverlapCount(), 0);
  const std::vector<Ref<Message>> got = rec.Messages();
  ASSERT_FALSE(got.empty());
  EXPECT_TRUE(IsFinalMessage(*got.back(), sub.Id()));
  // Dispatched counts every callback, the final one included.
  EXPECT_EQ(sub.Stats().dispatched, at_join);
  EXPECT_TRUE(sub.Stats().done);
}

TEST_P(SubscriptionLifecycleModes, BUS14_JoinFromOwnCallbackIsReportedAtOnce) {
  ScopedMisuseAction log(MisuseAction::kLog);
  LogCapture capture;
  Ref<Topic> topic = Topic::Create("bus14-self-join");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription* handle = nullptr;
  std::atomic<int> join_result{-1};
  std::atomic<int> final_join_result{-1};
  std::atomic<std::uint64_t> misuse_during{0};
  Ref<Message> trigger = StringType().Make("join yourself");
  const Message* trigger_ptr = trigger.get();
  const std::uint64_t misuse_before = MisuseReportCount();
  int join_line = 0;
  Subscription sub = Subscription::Create(
      topic,
      [&, rec, trigger_ptr](const Message& m, bool is_final) {
        if (&m == trigger_ptr) {
          join_line = __LINE__ + 1;
          join_result = handle->Join() ? 1 : 0;
          misuse_during = MisuseReportCount();
        }
        if (is_final) final_join_result = handle->Join() ? 1 : 0;
        rec.Receive(m, is_final);
      },
      options());
  handle = &sub;
  topic->Publish(trigger);
  ASSERT_TRUE(rec.WaitForCount(1));
  EXPECT_EQ(join_result.load(), 0);  // reported, refused, returned at once
  EXPECT_EQ(misuse_during.load(), misuse_before + 1);
  EXPECT_TRUE(plexus_test::LoggedAt(capture, __FILE__, join_line)) << capture.Text();
  ASSERT_TRUE(sub.Unsubscribe());
  ASSERT_TRUE(rec.WaitForFinal());
  ASSERT_TRUE(sub.Join());
  EXPECT_EQ(final_join_result.load(), 0);  // from the final callback too
  EXPECT_EQ(MisuseReportCount(), misuse_before + 2);
}

}  // namespace
}  // namespace plexus
