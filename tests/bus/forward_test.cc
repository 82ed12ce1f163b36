// Forward: ForwardAll makes a child topic's messages reach its parent's subscribers once, until
// the forward is cancelled or its handle destroyed; cycles, rings and diamonds of forwards still
// deliver each message once to each subscriber, and a pair already forwarded (or a topic to
// itself) is refused (BUS08, BUS09). Delivery cases run in each delivery mode.

#include <string>
#include <utility>

#include "bus/bus_test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"

namespace plexus {
namespace {

using plexus_test::Recorder;
using plexus_test::Strings;
using plexus_test::StringType;

class ForwardModes : public plexus_test::ModeTest {};

INSTANTIATE_TEST_SUITE_P(AllModes, ForwardModes, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// BUS08 Forward
// -----------------------------------------------------------------------------------------

TEST_P(ForwardModes, BUS08_ForwardReachesBothOnceAndCancelStopsIt) {
  Ref<Topic> parent = Topic::Create("bus08-parent");
  Ref<Topic> child = Topic::Create("bus08-child");
  Recorder parent_rec = Recorder::IgnoringChanges();
  Recorder child_rec = Recorder::IgnoringChanges();
  Subscription ps = Subscription::Create(parent, parent_rec.Handler(), options());
  Subscription cs = Subscription::Create(child, child_rec.Handler(), options());
  Forward forward = ForwardAll(child, parent);
  ASSERT_TRUE(forward.IsActive());
  EXPECT_EQ(forward.From().get(), child.get());
  EXPECT_EQ(forward.To().get(), parent.get());

  Ref<Message> first = StringType().Make("first");
  const PublishResult result = child->Publish(first);
  EXPECT_EQ(result.delivered, 2u);
  ASSERT_TRUE(parent_rec.WaitForCount(1));
  ASSERT_TRUE(child_rec.WaitForCount(1));

  forward.Cancel();
  EXPECT_FALSE(forward.IsActive());
  forward.Cancel();  // idempotent
  Ref<Message> second = StringType().Make("second");
  EXPECT_EQ(child->Publish(second).delivered, 1u);

  ASSERT_TRUE(ps.UnsubscribeAndJoin());
  ASSERT_TRUE(cs.UnsubscribeAndJoin());
  EXPECT_EQ(parent_rec.Occurrences(first.get()), 1u);
  EXPECT_EQ(child_rec.Occurrences(first.get()), 1u);
  EXPECT_EQ(parent_rec.Count(), 1u) << ::testing::PrintToString(Strings(parent_rec.Messages()));
  EXPECT_EQ(child_rec.Occurrences(second.get()), 1u);
  EXPECT_FALSE(parent_rec.Contains(second.get()));
}

TEST_P(ForwardModes, BUS08_DestroyingTheForwardHandleCancels) {
  Ref<Topic> parent = Topic::Create("bus08-parent-d");
  Ref<Topic> child = Topic::Create("bus08-child-d");
  Recorder parent_rec = Recorder::IgnoringChanges();
  Subscription ps = Subscription::Create(parent, parent_rec.Handler(), options());
  Ref<Message> before = StringType().Make("before");
  Ref<Message> after = StringType().Make("after");
  {
    Forward forward = ForwardAll(child, parent);
    ASSERT_TRUE(forward.IsActive());
    Forward moved = std::move(forward);
    EXPECT_TRUE(moved.IsActive());
    EXPECT_EQ(child->Publish(before).delivered, 1u);
  }
  EXPECT_EQ(child->Publish(after).delivered, 0u);
  ASSERT_TRUE(ps.UnsubscribeAndJoin());
  EXPECT_TRUE(parent_rec.Contains(before.get()));
  EXPECT_FALSE(parent_rec.Contains(after.get()));
}

// -----------------------------------------------------------------------------------------
// BUS09 Forwarding cycles and diamonds
// -----------------------------------------------------------------------------------------

TEST_P(ForwardModes, BUS09_CycleDeliversOnceAndReturns) {
  Ref<Topic> a = Topic::Create("bus09-a");
  Ref<Topic> b = Topic::Create("bus09-b");
  Forward ab = ForwardAll(a, b);
  Forward ba = ForwardAll(b, a);
  ASSERT_TRUE(ab.IsActive());
  ASSERT_TRUE(ba.IsActive());
  Recorder ra = Recorder::IgnoringChanges();
  Recorder rb = Recorder::IgnoringChanges();
  Subscription sa = Subscription::Create(a, ra.Handler(), options());
  Subscription sb = Subscription::Create(b, rb.Handler(), options());

  Ref<Message> on_a = StringType().Make("on a");
  Ref<Message> on_b = StringType().Make("on b");
  EXPECT_EQ(a->Publish(on_a).delivered, 2u);
  EXPECT_EQ(b->Publish(on_b).delivered, 2u);
  ASSERT_TRUE(sa.UnsubscribeAndJoin());
  ASSERT_TRUE(sb.UnsubscribeAndJoin());
  EXPECT_EQ(ra.Occurrences(on_a.get()), 1u);
  EXPECT_EQ(rb.Occurrences(on_a.get()), 1u);
  EXPECT_EQ(ra.Occurrences(on_b.get()), 1u);
  EXPECT_EQ(rb.Occurrences(on_b.get()), 1u);
  EXPECT_EQ(ra.Count(), 2u);
  EXPECT_EQ(rb.Count(), 2u);
}

TEST_P(ForwardModes, BUS09_LongerCycleAndSelfForward) {
  Ref<Topic> a = Topic::Create("bus09-ring-a");
  Ref<Topic> b = Topic::Create("bus09-ring-b");
  Ref<Topic> c = Topic::Create("bus09-ring-c");
  Forward ab = ForwardAll(a, b);
  Forward bc = ForwardAll(b, c);
  Forward ca = ForwardAll(c, a);
  Forward self = ForwardAll(a, a);
  EXPECT_FALSE(self.IsActive());
  Recorder rec[3] = {Recorder::IgnoringChanges(), Recorder::IgnoringChanges(),
                     Recorder::IgnoringChanges()};
  Subscription subs[3] = {Subscription::Create(a, rec[0].Handler(), options()),
                          Subscription::Create(b, rec[1].Handler(), options()),
                          Subscription::Create(c, rec[2].Handler(), options())};
  Ref<Message> msg = StringType().Make("ring");
  EXPECT_EQ(b->Publish(msg).delivered, 3u);
  for (Subscription& s : subs) ASSERT_TRUE(s.UnsubscribeAndJoin());
  for (Recorder& r : rec) {
    EXPECT_EQ(r.Occurrences(msg.get()), 1u);
    EXPECT_EQ(r.Count(), 1u);
  }
}

TEST_P(ForwardModes, BUS09_DiamondDeliversOnce) {
  Ref<Topic> a = Topic::Create("bus09-top");
  Ref<Topic> b = Topic::Create("bus09-left");
  Ref<Topic> c = Topic::Create("bus09-right");
  Ref<Topic> d = Topic::Create("bus09-bottom");
  Forward ab = ForwardAll(a, b);
  Forward ac = ForwardAll(a, c);
  Forward bd = ForwardAll(b, d);
  Forward cd = ForwardAll(c, d);
  Recorder rd = Recorder::IgnoringChanges();
  Subscription sd = Subscription::Create(d, rd.Handler(), options());
  Ref<Message> msg = StringType().Make("diamond");
  EXPECT_EQ(a->Publish(msg).delivered, 1u);
  ASSERT_TRUE(sd.UnsubscribeAndJoin());
  EXPECT_EQ(rd.Occurrences(msg.get()), 1u);
  EXPECT_EQ(rd.Count(), 1u);
}

TEST(BusAcceptance, BUS09_ForwardingTheSamePairTwiceIsRefused) {
  Ref<Topic> a = Topic::Create("bus09-twice-a");
  Ref<Topic> b = Topic::Create("bus09-twice-b");
  Forward first = ForwardAll(a, b);
  Forward second = ForwardAll(a, b);
  EXPECT_TRUE(first.IsActive());
  EXPECT_FALSE(second.IsActive());
  Recorder rb = Recorder::IgnoringChanges();
  Subscription sb = Subscription::Create(b, rb.Handler());
  Ref<Message> msg = StringType().Make("once");
  EXPECT_EQ(a->Publish(msg).delivered, 1u);
  ASSERT_TRUE(sb.UnsubscribeAndJoin());
  EXPECT_EQ(rb.Occurrences(msg.get()), 1u);
}

}  // namespace
}  // namespace plexus
