// Topic: Publish delivers the very message object to every subscriber and reports what became
// of it (PublishResult), PublishAndWait returns once the named subscriber handled the message
// without holding up other publishers, and every subscriber sees one publisher's messages in the
// order published, also through forwarding children (BUS05, BUS06, BUS15). Delivery cases run
// in each delivery mode.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
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

using plexus_test::Gate;
using plexus_test::IntType;
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

class TopicModes : public plexus_test::ModeTest {};

INSTANTIATE_TEST_SUITE_P(AllModes, TopicModes, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// BUS05 Publish
// -----------------------------------------------------------------------------------------

TEST_P(TopicModes, BUS05_PublishDeliversTheSameObject) {
  Ref<Topic> topic = Topic::Create("bus05-publish");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(topic, rec.Handler(), options());
  Ref<Message> msg = StringType().Make("hello");
  ASSERT_NE(msg, nullptr);
  const PublishResult result = topic->Publish(msg);
  EXPECT_EQ(result.delivered, 1u);
  EXPECT_EQ(result.filtered, 0u);
  ASSERT_TRUE(rec.WaitForCount(1));
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  const std::vector<Ref<Message>> got = rec.Messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].get(), msg.get());  // identity, not a copy
  EXPECT_EQ(StringOf(*got[0]), "hello");
  EXPECT_TRUE(rec.IsComplete());
}

TEST_P(TopicModes, BUS05_EverySubscriberGetsTheSameObject) {
  Ref<Topic> topic = Topic::Create("bus05-fanout");
  std::vector<Recorder> recs(3, Recorder::IgnoringChanges());
  for (Recorder& r : recs) r = Recorder::IgnoringChanges();
  std::vector<Subscription> subs;
  for (Recorder& r : recs) subs.push_back(Subscription::Create(topic, r.Handler(), options()));
  Ref<Message> msg = StringType().Make("all");
  EXPECT_EQ(topic->Publish(msg).delivered, 3u);
  for (Subscription& s : subs) ASSERT_TRUE(s.UnsubscribeAndJoin());
  for (Recorder& r : recs) {
    const std::vector<Ref<Message>> got = r.Messages();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].get(), msg.get());
  }
}

TEST_P(TopicModes, BUS05_TypedPublishDeliversItsValue) {
  Ref<Topic> topic = Topic::Create("bus05-typed");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(topic, rec.Handler(), options());
  EXPECT_EQ(topic->Publish(StringType(), std::string("typed")).delivered, 1u);
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  const std::vector<Ref<Message>> got = rec.Messages();
  ASSERT_EQ(got.size(), 1u);
  ASSERT_NE(StringType().Get(*got[0]), nullptr);
  EXPECT_EQ(*StringType().Get(*got[0]), "typed");
}

// -----------------------------------------------------------------------------------------
// PublishResult
// -----------------------------------------------------------------------------------------

TEST(BusUnit, PublishResultCountsEachOutcome) {
  Ref<Topic> topic = Topic::Create("unit-result");
  EXPECT_EQ(topic->Publish(IntType(), 0).delivered, 0u);  // nobody listens
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  Recorder plain = Recorder::IgnoringChanges();
  Subscription s_plain = Subscription::Create(topic, plain.Handler());
  SubscriptionOptions only_strings;
  only_strings.accepted_types = {StringType().get()};
  Recorder picky = Recorder::IgnoringChanges();
  Subscription s_picky = Subscription::Create(topic, picky.Handler(), only_strings);
  // Two bounded subscriptions held up by the gate on the first int.
  auto blocked = [wait](const Message& m, bool) {
    if (IntType().Get(m) != nullptr) wait();
  };
  SubscriptionOptions reject;
  reject.policy = QueuePolicy::kRejectNew;
  reject.capacity = 1;
  reject.accepted_types = {IntType().get()};
  Subscription s_reject = Subscription::Create(topic, blocked, reject);
  SubscriptionOptions drop;
  drop.policy = QueuePolicy::kDropOldest;
  drop.capacity = 1;
  drop.accepted_types = {IntType().get()};
  Subscription s_drop = Subscription::Create(topic, blocked, drop);

  const std::uint64_t picky_filtered_before = s_picky.Stats().filtered;  // notices
  const PublishResult first = topic->Publish(IntType(), 1);
  EXPECT_EQ(first.delivered, 3u);
  EXPECT_EQ(first.filtered, 1u);
  EXPECT_EQ(first.rejected, 0u);
  EXPECT_EQ(first.dropped, 0u);
  ASSERT_TRUE(gate.WaitForArrivals(2));  // both bounded ones are inside their callback
  std::uint64_t rejected = 0;
  std::uint64_t dropped = 0;
  for (int n = 2; n < 6; ++n) {
    const PublishResult r = topic->Publish(IntType(), n);
    EXPECT_EQ(r.filtered, 1u);
    EXPECT_EQ(r.delivered + r.rejected, 3u);  // plain, drop: delivered; reject: either
    EXPECT_LE(r.dropped, 1u);
    rejected += r.rejected;
    dropped += r.dropped;
  }
  EXPECT_GE(rejected, 3u);
  EXPECT_GE(dropped, 3u);
  EXPECT_EQ(s_reject.Stats().rejected, rejected);
  EXPECT_EQ(s_drop.Stats().dropped, dropped);
  EXPECT_EQ(s_picky.Stats().filtered - picky_filtered_before, 5u);
  gate.Open();
  for (Subscription* s : {&s_plain, &s_picky, &s_reject, &s_drop}) {
    ASSERT_TRUE(s->UnsubscribeAndJoin());
  }
  EXPECT_EQ(plain.Count(), 5u);
  EXPECT_EQ(picky.Count(), 0u);
}

// A topic's snapshot keeps its subscriptions, its listeners and its forward targets side by side
// in one block: each list stays whole and apart while members come and go in any order.
TEST(BusUnit, SubscriptionsListenersAndForwardsStayApartAcrossEdits) {
  Ref<Topic> topic = Topic::Create("unit-snapshot");
  std::vector<Ref<Topic>> targets;
  std::vector<Recorder> target_recorders;
  std::vector<Subscription> target_subs;
  std::vector<Forward> forwards;
  for (int i = 0; i < 3; ++i) {
    targets.push_back(Topic::Create("unit-snapshot-target"));
    target_recorders.push_back(Recorder::IgnoringChanges());
    SubscriptionOptions sync;
    sync.mode = DeliveryMode::kSynchronous;
    target_subs.push_back(
        Subscription::Create(targets.back(), target_recorders.back().Handler(), sync));
    forwards.push_back(ForwardAll(topic, targets.back()));
  }
  std::vector<Recorder> recorders;
  std::vector<Subscription> subs;
  for (int i = 0; i < 6; ++i) {
    SubscriptionOptions options;
    options.mode = DeliveryMode::kSynchronous;
    options.subscription_changes = i % 2 == 0;  // every other one listens to the others
    recorders.push_back(Recorder::IgnoringChanges());
    subs.push_back(Subscription::Create(topic, recorders.back().Handler(), options));
  }
  EXPECT_EQ(topic->Stats().subscribers, 6u);
  EXPECT_EQ(topic->Stats().forwards_out, 3u);
  EXPECT_EQ(topic->Publish(IntType(), 1).delivered, 9u);  // six here, three through forwards
  // Out of the middle: a listener, a forward, a plain one.
  subs[2].Unsubscribe();
  forwards[1].Cancel();
  subs[3].Unsubscribe();
  EXPECT_EQ(topic->Stats().subscribers, 4u);
  EXPECT_EQ(topic->Stats().forwards_out, 2u);
  EXPECT_EQ(topic->Publish(IntType(), 2).delivered, 6u);
  for (int i : {0, 1, 4, 5}) EXPECT_EQ(recorders[static_cast<std::size_t>(i)].Count(), 2u) << i;
  for (int i : {2, 3}) EXPECT_EQ(recorders[static_cast<std::size_t>(i)].Count(), 1u) << i;
  EXPECT_EQ(target_recorders[0].Count(), 2u);
  EXPECT_EQ(target_recorders[1].Count(), 1u);
  EXPECT_EQ(target_recorders[2].Count(), 2u);
  for (Subscription& s : subs) s.Unsubscribe();
  for (Forward& f : forwards) f.Cancel();
  EXPECT_EQ(topic->Stats().subscribers, 0u);
  EXPECT_EQ(topic->Stats().forwards_out, 0u);
  EXPECT_EQ(topic->Publish(IntType(), 3).delivered, 0u);
}

// -----------------------------------------------------------------------------------------
// BUS06 Publish and wait
// -----------------------------------------------------------------------------------------

TEST_P(TopicModes, BUS06_PublishAndWaitReturnsAfterTheCallbackHandledIt) {
  Ref<Topic> topic = Topic::Create("bus06-wait");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(topic, rec.Handler(), options());
  for (int i = 0; i < 50; ++i) {
    Ref<Message> msg = IntType().Make(i);
    const PublishResult result = topic->PublishAndWait(msg, sub);
    // Right after the call, without waiting.
    ASSERT_TRUE(rec.Contains(msg.get())) << "message " << i;
    EXPECT_EQ(result.delivered, 1u);
  }
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_EQ(rec.Count(), 50u);
}

TEST_P(TopicModes, BUS06_WaitsOnlyForTheNamedSubscriber) {
  Ref<Topic> topic = Topic::Create("bus06-named");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  // `other` is blocked on the gate by the message; waiting for `target` must not wait for it.
  Recorder other_rec = Recorder::IgnoringChanges();
  Ref<Message> msg = StringType().Make("both");
  const Message* blocker = msg.get();
  if (synchronous()) GTEST_SKIP() << "a blocked synchronous subscriber blocks its publisher";
  Subscription other = Subscription::Create(
      topic,
      [other_rec, wait, blocker](const Message& m, bool is_final) {
        if (&m == blocker) wait();
        other_rec.Receive(m, is_final);
      },
      options());
  Recorder rec = Recorder::IgnoringChanges();
  Subscription target = Subscription::Create(topic, rec.Handler(), options());
  topic->PublishAndWait(msg, target);
  EXPECT_TRUE(rec.Contains(msg.get()));
  EXPECT_FALSE(other_rec.Contains(msg.get()));
  gate.Open();
  ASSERT_TRUE(other.UnsubscribeAndJoin());
  ASSERT_TRUE(target.UnsubscribeAndJoin());
  EXPECT_TRUE(other_rec.Contains(msg.get()));
}

TEST_P(TopicModes, BUS06_OtherPublishersAreNotBlockedMeanwhile) {
  if (synchronous()) {
    GTEST_SKIP() << "a synchronous callback runs inside the topic's fan-out, which is serialized";
  }
  Ref<Topic> topic = Topic::Create("bus06-others");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  Ref<Message> slow = StringType().Make("slow");
  const Message* slow_ptr = slow.get();
  // S handles `slow` only once the gate opens.
  Recorder s_rec = Recorder::IgnoringChanges();
  Subscription s = Subscription::Create(
      topic,
      [s_rec, wait, slow_ptr](const Message& m, bool is_final) {
        if (&m == slow_ptr) wait();
        s_rec.Receive(m, is_final);
      },
      options());
  Recorder t_rec = Recorder::IgnoringChanges();
  Subscription t = Subscription::Create(topic, t_rec.Handler(), options());

  std::atomic<bool> a_returned{false};
  std::atomic<bool> a_saw_it{false};
  std::thread a([&] {
    topic->PublishAndWait(slow, s);
    a_saw_it = s_rec.Contains(slow_ptr);
    a_returned = true;
  });
  ScopeExit join_a([&] {
    gate.Open();
    a.join();
  });
  ASSERT_TRUE(gate.WaitForArrivals(1));  // S is inside its callback for `slow`
  EXPECT_FALSE(a_returned.load());       // ... so A still waits

  // Another publisher of the same topic goes through meanwhile.
  Ref<Message> quick = StringType().Make("quick");
  std::atomic<bool> b_returned{false};
  std::thread b([&] {
    topic->Publish(quick);
    b_returned = true;
  });
  const bool b_done = WaitUntil([&] { return b_returned.load(); });
  if (!b_done) gate.Open();  // let B finish so the test can report
  b.join();
  EXPECT_TRUE(b_done) << "a plain publish waited for another publisher's PublishAndWait";
  EXPECT_TRUE(t_rec.WaitForCount(2));  // T got both while S was still blocked
  EXPECT_TRUE(t_rec.Contains(quick.get()));
  EXPECT_FALSE(a_returned.load());

  gate.Open();
  ASSERT_TRUE(WaitUntil([&] { return a_returned.load(); }));
  EXPECT_TRUE(a_saw_it.load());
  ASSERT_TRUE(s.UnsubscribeAndJoin());
  ASSERT_TRUE(t.UnsubscribeAndJoin());
  EXPECT_THAT(Strings(s_rec.Messages()), ElementsAre("slow", "quick"));
}

TEST(BusUnit, PublishAndWaitFromOwnCallbackIsMisuse) {
  ScopedMisuseAction log(MisuseAction::kLog);
  LogCapture capture;
  // A synchronous subscriber handles the inner message inline, before the inner publish
  // returns, so it has nothing to wait for: only the queued modes are checked.
  for (DeliveryMode mode : {DeliveryMode::kPool, DeliveryMode::kDedicatedThread}) {
    SCOPED_TRACE(plexus_test::ModeName(mode));
    Ref<Topic> topic = Topic::Create("unit-self-wait");
    Recorder rec = Recorder::IgnoringChanges();
    Subscription* handle = nullptr;
    std::atomic<std::uint64_t> misuse_after{0};
    int line = 0;
    const std::uint64_t misuse_before = MisuseReportCount();
    Subscription sub = Subscription::Create(
        topic,
        [&, rec](const Message& m, bool is_final) {
          if (StringOf(m) == "wait for yourself") {
            line = __LINE__ + 1;
            topic->PublishAndWait(StringType().Make("inner"), *handle);
            misuse_after = MisuseReportCount();
          }
          rec.Receive(m, is_final);
        },
        plexus_test::InMode(mode));
    handle = &sub;
    topic->Publish(StringType().Make("wait for yourself"));
    ASSERT_TRUE(rec.WaitForCount(1));
    EXPECT_EQ(misuse_after.load(), misuse_before + 1);
    EXPECT_TRUE(plexus_test::LoggedAt(capture, __FILE__, line));
    ASSERT_TRUE(sub.UnsubscribeAndJoin());
  }
}

// -----------------------------------------------------------------------------------------
// BUS15 Ordering
// -----------------------------------------------------------------------------------------

std::vector<std::pair<int, int>> Sequence(const std::vector<Ref<Message>>& messages) {
  std::vector<std::pair<int, int>> out;
  for (const Ref<Message>& m : messages) {
    if (const Seq* s = SeqType().Get(*m)) out.emplace_back(s->source, s->n);
  }
  return out;
}

// Whether, per source, the numbers are 0, 1, 2, ... `per_source` - 1 in that order.
::testing::AssertionResult InOrderPerSource(const std::vector<std::pair<int, int>>& seq,
                                            int sources, int per_source) {
  std::vector<int> next(static_cast<std::size_t>(sources), 0);
  for (const auto& [source, n] : seq) {
    if (source < 0 || source >= sources) {
      return ::testing::AssertionFailure() << "unknown source " << source;
    }
    if (n != next[static_cast<std::size_t>(source)]) {
      return ::testing::AssertionFailure() << "source " << source << ": got " << n << ", expected "
                                           << next[static_cast<std::size_t>(source)];
    }
    ++next[static_cast<std::size_t>(source)];
  }
  for (int s = 0; s < sources; ++s) {
    if (next[static_cast<std::size_t>(s)] != per_source) {
      return ::testing::AssertionFailure()
             << "source " << s << ": " << next[static_cast<std::size_t>(s)] << " of " << per_source;
    }
  }
  return ::testing::AssertionSuccess();
}

TEST_P(TopicModes, BUS15_PublishOrderAndTheSameOrderForEverySubscriber) {
  constexpr int kSources = 4;
  const int per_source = plexus_test::BusScaled(500);
  Ref<Topic> topic = Topic::Create("bus15-order");
  std::vector<Recorder> recs;
  std::vector<Subscription> subs;
  for (int i = 0; i < 3; ++i) {
    recs.push_back(Recorder::IgnoringChanges());
    subs.push_back(Subscription::Create(topic, recs.back().Handler(), options()));
  }
  std::vector<std::thread> publishers;
  for (int p = 0; p < kSources; ++p) {
    publishers.emplace_back([&, p] {
      for (int n = 0; n < per_source; ++n) topic->Publish(SeqType(), Seq{p, n});
    });
  }
  for (std::thread& t : publishers) t.join();
  for (Subscription& s : subs) ASSERT_TRUE(s.UnsubscribeAndJoin());
  const auto first = Sequence(recs[0].Messages());
  EXPECT_TRUE(InOrderPerSource(first, kSources, per_source));
  for (std::size_t i = 1; i < recs.size(); ++i) {
    EXPECT_TRUE(Sequence(recs[i].Messages()) == first)
        << "subscriber " << i << " saw another order";
    EXPECT_EQ(recs[i].OverlapCount(), 0);
  }
}

TEST_P(TopicModes, BUS15_OneThreadsOrderThroughDifferentChildren) {
  const int count = plexus_test::BusScaled(2000);
  Ref<Topic> parent = Topic::Create("bus15-parent");
  std::vector<Ref<Topic>> children;
  std::vector<Forward> forwards;
  for (int i = 0; i < 4; ++i) {
    children.push_back(Topic::Create(plexus_test::Cat({"bus15-child-", std::to_string(i)})));
    forwards.push_back(ForwardAll(children.back(), parent));
  }
  Recorder rec = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(parent, rec.Handler(), options());
  std::uint32_t x = 12345;  // a fixed pseudo-random choice of child
  for (int n = 0; n < count; ++n) {
    x = x * 1103515245u + 12345u;
    children[(x >> 16) % children.size()]->Publish(SeqType(), Seq{0, n});
  }
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_TRUE(InOrderPerSource(Sequence(rec.Messages()), 1, count));
}

TEST_P(TopicModes, BUS15_SeveralThreadsThroughChildrenKeepTheirOwnOrder) {
  constexpr int kThreads = 3;
  const int count = plexus_test::BusScaled(1000);
  Ref<Topic> parent = Topic::Create("bus15-parent-mt");
  std::vector<Ref<Topic>> children;
  std::vector<Forward> forwards;
  for (int i = 0; i < 3; ++i) {
    children.push_back(Topic::Create(plexus_test::Cat({"bus15-mt-child-", std::to_string(i)})));
    forwards.push_back(ForwardAll(children.back(), parent));
  }
  Recorder rec = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(parent, rec.Handler(), options());
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < count; ++n) {
        children[static_cast<std::size_t>((n + t) % 3)]->Publish(SeqType(), Seq{t, n});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_TRUE(InOrderPerSource(Sequence(rec.Messages()), kThreads, count));
}

}  // namespace
}  // namespace plexus
