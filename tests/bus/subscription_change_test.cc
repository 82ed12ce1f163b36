// Subscription change notices: every subscription hears its own subscribe notice first and its
// unsubscribe notice as its final message; listeners (by option or by a type filter accepting
// the change type) also hear the others' notices, through forwards too; a subscribe storm costs
// linear deliveries; and the change type and IsFinalMessage themselves (BUS03, BUS04). Delivery
// cases run in each delivery mode.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <semaphore>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"

namespace plexus {
namespace {

using plexus_test::ChangeOf;
using plexus_test::IntType;
using plexus_test::Recorder;
using plexus_test::StringOf;
using plexus_test::Strings;

class SubscriptionChangeModes : public plexus_test::ModeTest {};

INSTANTIATE_TEST_SUITE_P(AllModes, SubscriptionChangeModes,
                         ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// BUS03/BUS04 Subscription notices
// -----------------------------------------------------------------------------------------

void ExpectSubscribeThenUnsubscribe(SubscriptionOptions options) {
  Ref<Topic> topic = Topic::Create("bus03-notices");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler(), std::move(options));
  ASSERT_TRUE(sub);
  const std::string id = sub.Id();
  EXPECT_FALSE(id.empty());
  EXPECT_TRUE(sub.IsSubscribed());
  EXPECT_TRUE(sub.Unsubscribe());
  ASSERT_TRUE(rec.WaitForFinal());
  EXPECT_TRUE(sub.Join());
  EXPECT_TRUE(sub.IsDone());
  EXPECT_FALSE(sub.IsSubscribed());

  const std::vector<Ref<Message>> got = rec.Messages();
  ASSERT_EQ(got.size(), 2u) << ::testing::PrintToString(Strings(got));
  const SubscriptionChange* first = ChangeOf(*got[0]);
  const SubscriptionChange* second = ChangeOf(*got[1]);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(first->topic.get(), topic.get());
  EXPECT_EQ(first->kind, SubscriptionChangeKind::kSubscribe);
  EXPECT_EQ(first->Description(), "Subscribe");
  EXPECT_EQ(first->subscription_id, id);
  EXPECT_EQ(second->topic.get(), topic.get());
  EXPECT_EQ(second->kind, SubscriptionChangeKind::kUnsubscribe);
  EXPECT_EQ(second->Description(), "Unsubscribe");
  EXPECT_EQ(second->subscription_id, id);
  EXPECT_FALSE(IsFinalMessage(*got[0], id));
  EXPECT_TRUE(IsFinalMessage(*got[1], id));
  EXPECT_EQ(rec.FinalCount(), 1);
  EXPECT_EQ(rec.AfterFinalCount(), 0);
}

TEST(BusAcceptance, BUS03_SubscribeThenUnsubscribeGivesTwoNotices) {
  ExpectSubscribeThenUnsubscribe({});
}

TEST_P(SubscriptionChangeModes, BUS04_SubscribeThenUnsubscribeGivesTwoNotices) {
  ExpectSubscribeThenUnsubscribe(options());
}

TEST_P(SubscriptionChangeModes, BUS04_UnsubscribeNoticeAlsoReachesOtherSubscribersThatListen) {
  Ref<Topic> topic = Topic::Create("bus04-others");
  Recorder watcher;
  SubscriptionOptions listening = options();
  listening.subscription_changes = true;
  Subscription watching = Subscription::Create(topic, watcher.Handler(), listening);
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler(), options());
  const std::string id = sub.Id();
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  ASSERT_TRUE(watching.UnsubscribeAndJoin());
  // The watcher saw its own subscribe, the other's subscribe and unsubscribe, its own final.
  const std::vector<Ref<Message>> seen = watcher.Messages();
  ASSERT_EQ(seen.size(), 4u) << ::testing::PrintToString(Strings(seen));
  ASSERT_NE(ChangeOf(*seen[1]), nullptr);
  EXPECT_EQ(ChangeOf(*seen[1])->subscription_id, id);
  EXPECT_EQ(ChangeOf(*seen[1])->kind, SubscriptionChangeKind::kSubscribe);
  ASSERT_NE(ChangeOf(*seen[2]), nullptr);
  EXPECT_EQ(ChangeOf(*seen[2])->subscription_id, id);
  EXPECT_EQ(ChangeOf(*seen[2])->kind, SubscriptionChangeKind::kUnsubscribe);
  // ... which is not the watcher's final message.
  EXPECT_FALSE(IsFinalMessage(*seen[2], watching.Id()));
  EXPECT_TRUE(IsFinalMessage(*seen[3], watching.Id()));
  EXPECT_EQ(watcher.FinalCount(), 1);
}

// The notices a recorder holds, as "<kind> <subscription id>".
std::vector<std::string> Notices(const Recorder& rec) {
  std::vector<std::string> out;
  for (const Ref<Message>& m : rec.Messages()) {
    if (const SubscriptionChange* c = ChangeOf(*m)) {
      out.push_back(plexus_test::Cat(
          {c->kind == SubscriptionChangeKind::kSubscribe ? "subscribe " : "unsubscribe ",
           c->subscription_id}));
    }
  }
  return out;
}

// N subscriptions made one after another, then dropped, cost 2N deliveries of notices (each its
// own subscribe notice and its final message), not N(N+1)/2 + N(N-1)/2 as in Asterisk.
TEST_P(SubscriptionChangeModes, BUS04_SubscribeStormCostsLinearDeliveries) {
  const int kSubscribers = mode() == DeliveryMode::kDedicatedThread ? 32 : 200;
  Ref<Topic> topic = Topic::Create("bus04-storm");
  auto deliveries = std::make_shared<std::atomic<std::uint64_t>>(0);
  std::vector<Subscription> subs;
  for (int i = 0; i < kSubscribers; ++i) {
    subs.push_back(Subscription::Create(
        topic, [deliveries](const Message&, bool) { deliveries->fetch_add(1); }, options()));
  }
  for (Subscription& s : subs) ASSERT_TRUE(s.UnsubscribeAndJoin());
  EXPECT_EQ(deliveries->load(), 2u * static_cast<std::uint64_t>(kSubscribers));
  for (const Subscription& s : subs) EXPECT_EQ(s.Stats().dispatched, 2u);
}

// A subscription's first callback is its own subscribe notice, even while another thread
// publishes on the topic as it subscribes (each subscription races a burst of publishes).
TEST_P(SubscriptionChangeModes, BUS04_OwnSubscribeNoticeComesFirst) {
  const int kSubscribers = plexus_test::kBusSanitized ? 10 : 20;
  constexpr int kBurst = 20;
  Ref<Topic> topic = Topic::Create("bus04-first");
  std::counting_semaphore<> bursts(0);
  std::thread publisher([&] {
    for (int i = 0; i < kSubscribers; ++i) {
      bursts.acquire();
      for (int n = 0; n < kBurst; ++n) topic->Publish(IntType(), n);
    }
  });
  std::vector<Recorder> recs;
  std::vector<Subscription> subs;
  for (int i = 0; i < kSubscribers; ++i) {
    bursts.release();
    recs.push_back(Recorder());
    subs.push_back(Subscription::Create(topic, recs.back().Handler(), options()));
  }
  publisher.join();
  for (std::size_t i = 0; i < subs.size(); ++i) {
    ASSERT_TRUE(subs[i].UnsubscribeAndJoin());
    const std::vector<Ref<Message>> got = recs[i].Messages();
    ASSERT_FALSE(got.empty());
    const SubscriptionChange* first = ChangeOf(*got[0]);
    ASSERT_NE(first, nullptr) << "subscription " << i << " heard " << StringOf(*got[0]) << " first";
    EXPECT_EQ(first->kind, SubscriptionChangeKind::kSubscribe);
    EXPECT_EQ(first->subscription_id, subs[i].Id());
  }
}

// A subscription that asks for the others' notices (by option, or by a type filter accepting
// the change type, from the start or later) gets them; one that does not, does not.
TEST_P(SubscriptionChangeModes, BUS04_ListenersHearTheOthersNotices) {
  Ref<Topic> topic = Topic::Create("bus04-listeners");
  Recorder by_filter;
  SubscriptionOptions filter_opts = options();
  filter_opts.accepted_types = {SubscriptionChangeType().get(), IntType().get()};
  Subscription filtered = Subscription::Create(topic, by_filter.Handler(), filter_opts);
  Recorder by_option;
  SubscriptionOptions option_opts = options();
  option_opts.subscription_changes = true;
  Subscription optioned = Subscription::Create(topic, by_option.Handler(), option_opts);
  Recorder plain;
  Subscription plain_sub = Subscription::Create(topic, plain.Handler(), options());

  Subscription x = Subscription::Create(topic, Recorder().Handler(), options());
  const std::string x_id = x.Id();
  ASSERT_TRUE(x.UnsubscribeAndJoin());
  // The plain subscription starts listening through its filter...
  plain_sub.AcceptType(SubscriptionChangeType().get());
  Subscription y = Subscription::Create(topic, Recorder().Handler(), options());
  const std::string y_id = y.Id();
  // ... and stops when the filter no longer names the change type.
  plain_sub.AcceptAllTypes();
  Subscription z = Subscription::Create(topic, Recorder().Handler(), options());
  const std::string z_id = z.Id();
  topic->Publish(IntType(), 7);
  ASSERT_TRUE(y.UnsubscribeAndJoin());
  ASSERT_TRUE(z.UnsubscribeAndJoin());
  ASSERT_TRUE(plain_sub.UnsubscribeAndJoin());
  ASSERT_TRUE(optioned.UnsubscribeAndJoin());
  ASSERT_TRUE(filtered.UnsubscribeAndJoin());

  const std::string f = filtered.Id();
  const std::string o = optioned.Id();
  const std::string p = plain_sub.Id();
  using V = std::vector<std::string>;
  EXPECT_EQ(
      Notices(by_filter),
      (V{"subscribe " + f, "subscribe " + o, "subscribe " + p, "subscribe " + x_id,
         "unsubscribe " + x_id, "subscribe " + y_id, "subscribe " + z_id, "unsubscribe " + y_id,
         "unsubscribe " + z_id, "unsubscribe " + p, "unsubscribe " + o, "unsubscribe " + f}));
  EXPECT_EQ(Notices(by_option),
            (V{"subscribe " + o, "subscribe " + p, "subscribe " + x_id, "unsubscribe " + x_id,
               "subscribe " + y_id, "subscribe " + z_id, "unsubscribe " + y_id,
               "unsubscribe " + z_id, "unsubscribe " + p, "unsubscribe " + o}));
  EXPECT_EQ(Notices(plain), (V{"subscribe " + p, "subscribe " + y_id, "unsubscribe " + p}));
  EXPECT_EQ(plain.Count(), 4u);  // the number too
}

// A listener of a parent topic hears of the subscriptions of a child forwarded into it.
TEST_P(SubscriptionChangeModes, BUS04_ListenersHearNoticesThroughForwards) {
  Ref<Topic> parent = Topic::Create("bus04-parent");
  Ref<Topic> child = Topic::Create("bus04-child");
  Forward forward = ForwardAll(child, parent);
  Recorder listener;
  SubscriptionOptions opts = options();
  opts.subscription_changes = true;
  Subscription listening = Subscription::Create(parent, listener.Handler(), opts);
  Recorder plain;
  Subscription plain_sub = Subscription::Create(parent, plain.Handler(), options());
  Subscription c = Subscription::Create(child, Recorder().Handler(), options());
  const std::string c_id = c.Id();
  ASSERT_TRUE(c.UnsubscribeAndJoin());
  ASSERT_TRUE(plain_sub.UnsubscribeAndJoin());
  ASSERT_TRUE(listening.UnsubscribeAndJoin());
  const std::string l = listening.Id();
  const std::string p = plain_sub.Id();
  EXPECT_EQ(Notices(listener), (std::vector<std::string>{"subscribe " + l, "subscribe " + p,
                                                         "subscribe " + c_id, "unsubscribe " + c_id,
                                                         "unsubscribe " + p, "unsubscribe " + l}));
  EXPECT_EQ(Notices(plain), (std::vector<std::string>{"subscribe " + p, "unsubscribe " + p}));
}

// -----------------------------------------------------------------------------------------
// The change type and the final message
// -----------------------------------------------------------------------------------------

TEST(BusUnit, SubscriptionChangeTypeAndIsFinalMessage) {
  const TypedMessageType<SubscriptionChange>& type = SubscriptionChangeType();
  ASSERT_TRUE(type);
  EXPECT_FALSE(type->Name().empty());
  EXPECT_FALSE(type->IsDeclined());
  EXPECT_EQ(&SubscriptionChangeType(), &type);
  const std::vector<const MessageType*> all = MessageType::All();
  EXPECT_NE(std::find(all.begin(), all.end(), type.get()), all.end());

  Ref<Topic> topic = Topic::Create("unit-final");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler());
  const std::string id = sub.Id();
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  const std::vector<Ref<Message>> got = rec.Messages();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(&got[0]->Type(), type.get());
  EXPECT_FALSE(IsFinalMessage(*got[0], id));
  EXPECT_TRUE(IsFinalMessage(*got[1], id));
  EXPECT_FALSE(IsFinalMessage(*got[1], id + "x"));
  EXPECT_FALSE(IsFinalMessage(*got[1], ""));
  EXPECT_FALSE(IsFinalMessage(*IntType().Make(1), id));
  // A hand-made unsubscribe notice with the id also counts (it is the same predicate).
  Ref<Message> made =
      type.Make(SubscriptionChange{topic, id, SubscriptionChangeKind::kUnsubscribe});
  ASSERT_NE(made, nullptr);
  EXPECT_TRUE(IsFinalMessage(*made, id));
  Ref<Message> sub_notice =
      type.Make(SubscriptionChange{topic, id, SubscriptionChangeKind::kSubscribe});
  EXPECT_FALSE(IsFinalMessage(*sub_notice, id));
}

}  // namespace
}  // namespace plexus
