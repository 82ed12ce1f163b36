// The bus acceptance cases BUS01-BUS19, one or more tests per case, named after it. Cases that
// concern delivery are run for each delivery mode (the shared pool, a dedicated thread,
// synchronous). Every wait is on a condition, never a sleep.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <stdexcept>
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
#include "plexus/bus/json.h"
#include "plexus/core/clock.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"
#include "plexus/exec/task_processor.h"

namespace plexus {
namespace {

using plexus_test::ChangeOf;
using plexus_test::Gate;
using plexus_test::InMode;
using plexus_test::IntType;
using plexus_test::ListedTopic;
using plexus_test::LogCapture;
using plexus_test::Recorder;
using plexus_test::ScopedMisuseAction;
using plexus_test::ScopeExit;
using plexus_test::Seq;
using plexus_test::SeqType;
using plexus_test::StringOf;
using plexus_test::StringType;
using plexus_test::WaitUntil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The string payloads of `messages` (notices as "<Subscribe>"/"<Unsubscribe>").
std::vector<std::string> Strings(const std::vector<Ref<Message>>& messages) {
  std::vector<std::string> out;
  for (const Ref<Message>& m : messages) {
    if (const SubscriptionChange* c = ChangeOf(*m)) {
      out.push_back(plexus_test::Cat({"<", c->Description(), ">"}));
    } else {
      out.push_back(StringOf(*m));
    }
  }
  return out;
}

class BusModes : public ::testing::TestWithParam<DeliveryMode> {
 protected:
  DeliveryMode mode() const { return GetParam(); }
  SubscriptionOptions options() const { return InMode(mode()); }
  bool synchronous() const { return mode() == DeliveryMode::kSynchronous; }
};

INSTANTIATE_TEST_SUITE_P(AllModes, BusModes, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

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
// BUS02 Messages
// -----------------------------------------------------------------------------------------

// A shared payload that says when it is destroyed.
class SharedPayload final : public RefCounted {
 public:
  SharedPayload(std::string value, std::shared_ptr<std::atomic<bool>> destroyed)
      : text(std::move(value)), destroyed_(std::move(destroyed)) {}
  ~SharedPayload() override { destroyed_->store(true); }
  const std::string text;

 private:
  std::shared_ptr<std::atomic<bool>> destroyed_;
};

const MessageType* Bus02Type() {
  static const MessageType* type = MessageType::Create("BusAcceptance.BUS02");
  return type;
}

TEST(BusAcceptance, BUS02_MessageNeedsTypeAndPayload) {
  PLEXUS_EXPECT_MISUSE_HERE(Message::Create(nullptr, std::string("data")));
  PLEXUS_EXPECT_MISUSE_HERE(Message::Create(Bus02Type(), Ref<SharedPayload>()));

  ScopedMisuseAction log(MisuseAction::kLog);
  EXPECT_EQ(Message::Create(nullptr, 42), nullptr);
  EXPECT_EQ(Message::Create(Bus02Type(), Ref<SharedPayload>()), nullptr);
  // A type bound to another payload type refuses the message.
  EXPECT_EQ(Message::Create(IntType().get(), std::string("not an int")), nullptr);
}

TEST(BusAcceptance, BUS02_MessagesReportTypePayloadAndNode) {
  // This API makes the local node the default (as Asterisk's stasis_message_create does):
  // a message made without a node id carries NodeId::Local(); NodeId::None() is explicit.
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  Ref<SharedPayload> payload = MakeRef<SharedPayload>("shared", destroyed);
  NodeId::Bytes ff;
  ff.fill(0xFF);
  const NodeId foreign(ff);

  Ref<Message> remote = Message::Create(Bus02Type(), payload, foreign);
  Ref<Message> local = Message::Create(Bus02Type(), payload);
  Ref<Message> none = Message::Create(Bus02Type(), payload, NodeId::None());
  ASSERT_NE(remote, nullptr);
  ASSERT_NE(local, nullptr);
  ASSERT_NE(none, nullptr);

  for (const Ref<Message>& m : {remote, local, none}) {
    EXPECT_EQ(&m->Type(), Bus02Type());
    EXPECT_EQ(m->PayloadPointer(), payload.get());
    EXPECT_EQ(m->As<SharedPayload>(), payload.get());
    EXPECT_EQ(m->As<std::string>(), nullptr);
    EXPECT_EQ(m->PayloadType(), typeid(SharedPayload));
  }
  EXPECT_EQ(remote->Node(), foreign);
  EXPECT_EQ(remote->Node().ToString(), "ff:ff:ff:ff:ff:ff");
  EXPECT_FALSE(remote->Node().IsLocal());
  EXPECT_FALSE(remote->Node().IsNone());
  EXPECT_EQ(local->Node(), NodeId::Local());
  EXPECT_TRUE(local->Node().IsLocal());
  EXPECT_TRUE(none->Node().IsNone());
  EXPECT_EQ(none->Node().ToString(), "none");

  // Each message holds the payload; the caller holds it too.
  EXPECT_EQ(payload->RefCount(), 4);
}

TEST(BusAcceptance, BUS02_PayloadLivesAsLongAsSomeHolder) {
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  Ref<SharedPayload> payload = MakeRef<SharedPayload>("shared", destroyed);
  Ref<Message> first = Message::Create(Bus02Type(), payload);
  Ref<Message> second = Message::Create(Bus02Type(), payload, NodeId::None());
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);

  payload = nullptr;  // the caller lets go first
  EXPECT_FALSE(destroyed->load());
  EXPECT_EQ(first->As<SharedPayload>()->text, "shared");
  first = nullptr;
  EXPECT_FALSE(destroyed->load());
  EXPECT_EQ(second->As<SharedPayload>()->text, "shared");
  second = nullptr;  // the last holder
  EXPECT_TRUE(destroyed->load());

  // And the other way round: the messages go first, the caller keeps the payload.
  auto destroyed2 = std::make_shared<std::atomic<bool>>(false);
  Ref<SharedPayload> kept = MakeRef<SharedPayload>("kept", destroyed2);
  {
    Ref<Message> m = Message::Create(Bus02Type(), kept);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(kept->RefCount(), 2);
  }
  EXPECT_FALSE(destroyed2->load());
  EXPECT_EQ(kept->RefCount(), 1);
  EXPECT_EQ(kept->text, "kept");
  kept = nullptr;
  EXPECT_TRUE(destroyed2->load());
}

// Messages are stamped with FastWallClock (core/clock.h), whose readings never go backwards on
// one thread: the instants around the creation are read from it too.
TEST(BusAcceptance, BUS02_TimestampLiesBetweenTheInstantsAround) {
  for (int i = 0; i < 100; ++i) {
    const WallClock::time_point before = FastWallClock::now();
    Ref<Message> m = StringType().Make("when");
    const WallClock::time_point after = FastWallClock::now();
    ASSERT_NE(m, nullptr);
    EXPECT_LE(before, m->Timestamp());
    EXPECT_LE(m->Timestamp(), after);
  }
  const WallClock::time_point before = FastWallClock::now();
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  Ref<Message> shared = Message::Create(Bus02Type(), MakeRef<SharedPayload>("shared", destroyed));
  const WallClock::time_point after = FastWallClock::now();
  ASSERT_NE(shared, nullptr);
  EXPECT_LE(before, shared->Timestamp());
  EXPECT_LE(shared->Timestamp(), after);
}

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

TEST_P(BusModes, BUS04_SubscribeThenUnsubscribeGivesTwoNotices) {
  ExpectSubscribeThenUnsubscribe(options());
}

TEST_P(BusModes, BUS04_UnsubscribeNoticeAlsoReachesOtherSubscribersThatListen) {
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
TEST_P(BusModes, BUS04_SubscribeStormCostsLinearDeliveries) {
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
TEST_P(BusModes, BUS04_OwnSubscribeNoticeComesFirst) {
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
TEST_P(BusModes, BUS04_ListenersHearTheOthersNotices) {
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
TEST_P(BusModes, BUS04_ListenersHearNoticesThroughForwards) {
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
// BUS05 Publish
// -----------------------------------------------------------------------------------------

TEST_P(BusModes, BUS05_PublishDeliversTheSameObject) {
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

TEST_P(BusModes, BUS05_EverySubscriberGetsTheSameObject) {
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

TEST_P(BusModes, BUS05_TypedPublishDeliversItsValue) {
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
// BUS06 Publish and wait
// -----------------------------------------------------------------------------------------

TEST_P(BusModes, BUS06_PublishAndWaitReturnsAfterTheCallbackHandledIt) {
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

TEST_P(BusModes, BUS06_WaitsOnlyForTheNamedSubscriber) {
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

TEST_P(BusModes, BUS06_OtherPublishersAreNotBlockedMeanwhile) {
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

// -----------------------------------------------------------------------------------------
// BUS07 Unsubscribe stops messages
// -----------------------------------------------------------------------------------------

TEST_P(BusModes, BUS07_NoMessageAfterUnsubscribe) {
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

TEST_P(BusModes, BUS07_OtherSubscribersKeepReceiving) {
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

// -----------------------------------------------------------------------------------------
// BUS08 Forward
// -----------------------------------------------------------------------------------------

TEST_P(BusModes, BUS08_ForwardReachesBothOnceAndCancelStopsIt) {
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

TEST_P(BusModes, BUS08_DestroyingTheForwardHandleCancels) {
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

TEST_P(BusModes, BUS09_CycleDeliversOnceAndReturns) {
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

TEST_P(BusModes, BUS09_LongerCycleAndSelfForward) {
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

TEST_P(BusModes, BUS09_DiamondDeliversOnce) {
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

TEST_P(BusModes, BUS10_TypeFilterIsSelective) {
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

TEST_P(BusModes, BUS10_AcceptTypeAfterSubscribeAffectsLaterMessages) {
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

TEST(BusAcceptance, BUS13_PoolTopicsInAnyOrder) {
  Ref<Topic> all = Topic::Create("bus13-all");
  const std::uint64_t all_id = all->Id();
  Ref<TopicPool> pool = TopicPool::Create(all);
  Ref<Topic> t = pool->Get("x");
  const std::uint64_t t_id = t->Id();
  Recorder rec;
  Subscription sub = Subscription::Create(t, rec.Handler());
  all = nullptr;
  pool = nullptr;  // the pool goes first: its forward is cancelled, the topic lives on
  t->Publish(StringType().Make("after the pool"));
  t = nullptr;
  plexus_test::Drop(sub);
  ASSERT_TRUE(rec.WaitForFinal());
  EXPECT_THAT(Strings(rec.Messages()),
              ElementsAre("<Subscribe>", "after the pool", "<Unsubscribe>"));
  rec.Clear();  // the recorded notices hold the topic
  EXPECT_TRUE(plexus_test::WaitForTopicGone(t_id));
  EXPECT_TRUE(plexus_test::WaitForTopicGone(all_id));
}

// -----------------------------------------------------------------------------------------
// BUS14 Final message is last
// -----------------------------------------------------------------------------------------

TEST_P(BusModes, BUS14_FinalIsLastWhilePublishersRun) {
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

TEST_P(BusModes, BUS14_JoinFromOwnCallbackIsReportedAtOnce) {
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

TEST_P(BusModes, BUS15_PublishOrderAndTheSameOrderForEverySubscriber) {
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

TEST_P(BusModes, BUS15_OneThreadsOrderThroughDifferentChildren) {
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

TEST_P(BusModes, BUS15_SeveralThreadsThroughChildrenKeepTheirOwnOrder) {
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

// -----------------------------------------------------------------------------------------
// BUS16 Topic pool
// -----------------------------------------------------------------------------------------

TEST(BusAcceptance, BUS16_TopicPool) {
  Ref<Topic> all = Topic::Create("bus16-all");
  Ref<TopicPool> pool = TopicPool::Create(all);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->All().get(), all.get());
  EXPECT_FALSE(pool->Exists("alice"));
  EXPECT_EQ(pool->Size(), 0u);

  Ref<Topic> alice = pool->Get("alice");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->Name(), "bus16-all/alice");
  EXPECT_EQ(pool->Get("alice").get(), alice.get());  // the same topic
  EXPECT_TRUE(pool->Exists("alice"));
  EXPECT_FALSE(pool->Exists("Alice"));  // case-sensitive
  EXPECT_FALSE(pool->Exists("bob"));
  EXPECT_EQ(pool->Size(), 1u);

  // A pool topic forwards into "all".
  Recorder all_rec = Recorder::IgnoringChanges();
  Subscription all_sub = Subscription::Create(all, all_rec.Handler());
  Ref<Message> m1 = StringType().Make("via alice");
  EXPECT_EQ(alice->Publish(m1).delivered, 1u);
  ASSERT_TRUE(all_rec.WaitForCount(1));

  // Deleting makes the next Get create a fresh one; the old one no longer forwards.
  EXPECT_TRUE(pool->Delete("alice"));
  EXPECT_FALSE(pool->Exists("alice"));
  EXPECT_EQ(pool->Size(), 0u);
  EXPECT_FALSE(pool->Delete("alice"));
  Ref<Message> m2 = StringType().Make("old alice");
  EXPECT_EQ(alice->Publish(m2).delivered, 0u);
  Ref<Topic> fresh = pool->Get("alice");
  ASSERT_NE(fresh, nullptr);
  EXPECT_NE(fresh.get(), alice.get());
  EXPECT_NE(fresh->Id(), alice->Id());
  EXPECT_EQ(fresh->Name(), "bus16-all/alice");
  EXPECT_TRUE(pool->Exists("alice"));
  Ref<Message> m3 = StringType().Make("new alice");
  EXPECT_EQ(fresh->Publish(m3).delivered, 1u);

  ASSERT_TRUE(all_sub.UnsubscribeAndJoin());
  EXPECT_TRUE(all_rec.Contains(m1.get()));
  EXPECT_FALSE(all_rec.Contains(m2.get()));
  EXPECT_TRUE(all_rec.Contains(m3.get()));
  EXPECT_EQ(all_rec.Count(), 2u);
}

TEST(BusAcceptance, BUS16_ConcurrentGetsOfOneNameGiveOneTopic) {
  Ref<TopicPool> pool = TopicPool::Create(Topic::Create("bus16-concurrent"));
  constexpr int kThreads = 4;
  std::vector<Topic*> got(kThreads * 50, nullptr);
  std::vector<Ref<Topic>> keep(kThreads * 50);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Ref<Topic> topic = pool->Get(plexus_test::Cat({"name-", std::to_string(i)}));
        got[static_cast<std::size_t>(t * 50 + i)] = topic.get();
        keep[static_cast<std::size_t>(t * 50 + i)] = std::move(topic);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(pool->Size(), 50u);
  for (int t = 1; t < kThreads; ++t) {
    for (int i = 0; i < 50; ++i) {
      EXPECT_EQ(got[static_cast<std::size_t>(t * 50 + i)], got[static_cast<std::size_t>(i)]);
    }
  }
}

// -----------------------------------------------------------------------------------------
// BUS17 Statistics
// -----------------------------------------------------------------------------------------

TEST_P(BusModes, BUS17_TopicAndSubscriptionCounters) {
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

TEST_P(BusModes, BUS17_QueueDepthAndHighestDepth) {
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
// BUS18 Congestion
// -----------------------------------------------------------------------------------------

// A copy of one alert change (whose strings are views).
struct AlertRecord {
  std::string processor;
  std::string subsystem;
  bool raised;
  std::size_t depth;
  std::size_t subsystem_alerts;
};

// Installs itself as the alert handler for its lifetime; keeps the "bus" subsystem's alerts.
class BusAlerts {
 public:
  BusAlerts()
      : previous_(SetTaskProcessorAlertHandler([this](const TaskProcessorAlert& a) {
          if (a.subsystem != "bus") return;
          std::lock_guard lock(mu_);
          records_.push_back(AlertRecord{std::string(a.processor), std::string(a.subsystem),
                                         a.raised, a.depth, a.subsystem_alerts});
        })) {}
  ~BusAlerts() { SetTaskProcessorAlertHandler(std::move(previous_)); }
  BusAlerts(const BusAlerts&) = delete;
  BusAlerts& operator=(const BusAlerts&) = delete;

  std::vector<AlertRecord> Records() const {
    std::lock_guard lock(mu_);
    return records_;
  }
  std::size_t Count() const {
    std::lock_guard lock(mu_);
    return records_.size();
  }

 private:
  TaskProcessorAlertHandler previous_;
  mutable std::mutex mu_;
  std::vector<AlertRecord> records_;
};

void ExpectAlertRaisedAndCleared(DeliveryMode mode) {
  BusAlerts alerts;
  Ref<Topic> topic = Topic::Create("bus18-alert");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  Recorder rec = Recorder::IgnoringChanges();
  Ref<Message> blocker = StringType().Make("block");
  const Message* blocker_ptr = blocker.get();
  SubscriptionOptions opts = InMode(mode);
  opts.high_water = 10;
  opts.low_water = 3;
  Subscription sub = Subscription::Create(
      topic,
      [rec, wait, blocker_ptr](const Message& m, bool is_final) {
        if (&m == blocker_ptr) wait();
        rec.Receive(m, is_final);
      },
      opts);
  ASSERT_TRUE(WaitUntil([&] { return sub.Stats().dispatched >= 1; }));  // the subscribe notice
  const std::size_t bus_alerts_before = TaskProcessorSubsystemAlertCount("bus");
  topic->Publish(blocker);
  ASSERT_TRUE(gate.WaitForArrivals(1));
  for (int n = 0; n < 8; ++n) topic->Publish(IntType(), n);
  EXPECT_FALSE(sub.Stats().alerted) << "below high water";
  EXPECT_EQ(alerts.Count(), 0u);
  for (int n = 8; n < 20; ++n) topic->Publish(IntType(), n);
  // The queue passed its high-water mark: a raised alert (callback and metric).
  ASSERT_TRUE(WaitUntil([&] { return alerts.Count() >= 1; }));
  EXPECT_TRUE(sub.Stats().alerted);
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("bus"), bus_alerts_before + 1);
  {
    const std::vector<AlertRecord> r = alerts.Records();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(r[0].raised);
    EXPECT_GE(r[0].depth, 10u);
    EXPECT_THAT(r[0].processor, ::testing::StartsWith("bus"));
    EXPECT_EQ(r[0].subsystem_alerts, bus_alerts_before + 1);
  }
  gate.Open();
  ASSERT_TRUE(rec.WaitForCount(21));
  ASSERT_TRUE(WaitUntil([&] { return alerts.Count() >= 2; }));
  const std::vector<AlertRecord> r = alerts.Records();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_FALSE(r[1].raised);
  EXPECT_LE(r[1].depth, 3u);
  EXPECT_EQ(r[1].processor, r[0].processor);
  EXPECT_FALSE(sub.Stats().alerted);
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("bus"), bus_alerts_before);
  EXPECT_GE(sub.Stats().max_depth, 10u);
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_EQ(alerts.Count(), 2u);
}

TEST(BusAcceptance, BUS18_HighWaterRaisesAndLowWaterClearsTheAlert) {
  ExpectAlertRaisedAndCleared(DeliveryMode::kPool);
}

TEST(BusAcceptance, BUS18_AlertOnADedicatedThread) {
  ExpectAlertRaisedAndCleared(DeliveryMode::kDedicatedThread);
}

// The alert handler runs with no bus lock held: one that publishes to the very subscription it
// hears about (from the publisher's thread on a raise, from the consumer's on a clear) neither
// deadlocks nor loses the message, and the raise is reported before the clear.
void ExpectAlertHandlerMayPublishToItsQueue(DeliveryMode mode) {
  Ref<Topic> topic = Topic::Create("bus18-alert-publishes");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  Recorder rec = Recorder::IgnoringChanges();
  Ref<Message> blocker = StringType().Make("block");
  const Message* blocker_ptr = blocker.get();
  SubscriptionOptions opts = InMode(mode);
  opts.high_water = 4;
  opts.low_water = 1;
  Subscription sub = Subscription::Create(
      topic,
      [rec, wait, blocker_ptr](const Message& m, bool is_final) {
        if (&m == blocker_ptr) wait();
        rec.Receive(m, is_final);
      },
      opts);
  const std::string queue = "bus/" + sub.Id();
  std::mutex mu;
  std::vector<bool> changes;  // raised?, in the order reported
  TaskProcessorAlertHandler previous =
      SetTaskProcessorAlertHandler([&](const TaskProcessorAlert& a) {
        if (a.processor != queue) return;
        {
          std::lock_guard lock(mu);
          changes.push_back(a.raised);
        }
        topic->Publish(StringType(), std::string(a.raised ? "from raise" : "from clear"));
      });
  ScopeExit restore([&] { SetTaskProcessorAlertHandler(std::move(previous)); });
  ASSERT_TRUE(WaitUntil([&] { return sub.Stats().dispatched >= 1; }));  // the subscribe notice
  topic->Publish(blocker);
  ASSERT_TRUE(gate.WaitForArrivals(1));
  for (int n = 0; n < 6; ++n) topic->Publish(IntType(), n);
  {
    // Raised on this thread, inside one of the publishes above.
    std::lock_guard lock(mu);
    EXPECT_EQ(changes, std::vector<bool>{true});
  }
  gate.Open();
  // The blocker, six numbers, and one message from each report.
  ASSERT_TRUE(rec.WaitForCount(9));
  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard lock(mu);
    return changes.size() >= 2;
  }));
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  std::lock_guard lock(mu);
  EXPECT_EQ(changes, (std::vector<bool>{true, false}));
  EXPECT_EQ(rec.Count(), 9u);
}

TEST(BusAcceptance, BUS18_AlertHandlerMayPublishToItsQueueOnThePool) {
  ExpectAlertHandlerMayPublishToItsQueue(DeliveryMode::kPool);
}

TEST(BusAcceptance, BUS18_AlertHandlerMayPublishToItsQueueOnADedicatedThread) {
  ExpectAlertHandlerMayPublishToItsQueue(DeliveryMode::kDedicatedThread);
}

TEST(BusAcceptance, BUS18_DropOldestLosesTheOldestAndNeverBlocks) {
  constexpr int kPublished = 200;
  constexpr std::size_t kCapacity = 8;
  Ref<Topic> topic = Topic::Create("bus18-drop");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  Recorder rec = Recorder::IgnoringChanges();
  Ref<Message> blocker = StringType().Make("block");
  const Message* blocker_ptr = blocker.get();
  SubscriptionOptions opts;
  opts.policy = QueuePolicy::kDropOldest;
  opts.capacity = kCapacity;
  Subscription sub = Subscription::Create(
      topic,
      [rec, wait, blocker_ptr](const Message& m, bool is_final) {
        if (&m == blocker_ptr) wait();
        rec.Receive(m, is_final);
      },
      opts);
  ASSERT_TRUE(WaitUntil([&] { return sub.Stats().dispatched >= 1; }));
  topic->Publish(blocker);
  ASSERT_TRUE(gate.WaitForArrivals(1));

  // The publisher runs on its own thread: were it to block, the test reports it (and opens
  // the gate) instead of hanging.
  std::atomic<bool> done{false};
  std::uint64_t dropped_by_results = 0;
  std::uint32_t delivered_by_results = 0;
  std::thread publisher([&] {
    for (int n = 0; n < kPublished; ++n) {
      const PublishResult r = topic->Publish(IntType(), n);
      dropped_by_results += r.dropped;
      delivered_by_results += r.delivered;
    }
    done = true;
  });
  const bool finished = WaitUntil([&] { return done.load(); });
  gate.Open();
  publisher.join();
  ASSERT_TRUE(finished) << "the publisher blocked on a full drop-oldest queue";
  EXPECT_EQ(delivered_by_results, static_cast<std::uint32_t>(kPublished));

  ASSERT_TRUE(sub.Unsubscribe());
  ASSERT_TRUE(rec.WaitForFinal());
  ASSERT_TRUE(sub.Join());
  std::vector<int> got;
  for (const Ref<Message>& m : rec.Messages()) {
    if (const int* v = IntType().Get(*m)) got.push_back(*v);
  }
  const SubscriptionStats st = sub.Stats();
  // The newest survived, in order, as one run ending with the last one published.
  ASSERT_FALSE(got.empty());
  EXPECT_LE(got.size(), kCapacity);
  EXPECT_EQ(got.back(), kPublished - 1);
  for (std::size_t i = 1; i < got.size(); ++i) EXPECT_EQ(got[i], got[i - 1] + 1);
  EXPECT_EQ(st.dropped, static_cast<std::uint64_t>(kPublished) - got.size());
  EXPECT_EQ(dropped_by_results, st.dropped);
  // Full: kCapacity waiting and the blocker being handled; the final message is queued beyond
  // the capacity (it is never dropped), so a full queue reaches one more.
  EXPECT_LE(st.max_depth, kCapacity + 2);
  EXPECT_EQ(rec.FinalCount(), 1);  // the final message is never dropped
}

TEST(BusAcceptance, BUS18_RejectNewRefusesAtPublish) {
  constexpr std::size_t kCapacity = 4;
  Ref<Topic> topic = Topic::Create("bus18-reject");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  Recorder rec = Recorder::IgnoringChanges();
  Ref<Message> blocker = StringType().Make("block");
  const Message* blocker_ptr = blocker.get();
  SubscriptionOptions opts;
  opts.policy = QueuePolicy::kRejectNew;
  opts.capacity = kCapacity;
  Subscription sub = Subscription::Create(
      topic,
      [rec, wait, blocker_ptr](const Message& m, bool is_final) {
        if (&m == blocker_ptr) wait();
        rec.Receive(m, is_final);
      },
      opts);
  ASSERT_TRUE(WaitUntil([&] { return sub.Stats().dispatched >= 1; }));
  topic->Publish(blocker);
  ASSERT_TRUE(gate.WaitForArrivals(1));
  std::vector<int> accepted;
  std::uint64_t rejected = 0;
  for (int n = 0; n < 20; ++n) {
    const PublishResult r = topic->Publish(IntType(), n);
    EXPECT_EQ(r.delivered + r.rejected, 1u);
    if (r.delivered == 1) accepted.push_back(n);
    rejected += r.rejected;
  }
  EXPECT_GE(rejected, 20u - kCapacity);
  gate.Open();
  ASSERT_TRUE(sub.Unsubscribe());
  ASSERT_TRUE(rec.WaitForFinal());
  ASSERT_TRUE(sub.Join());
  std::vector<int> got;
  for (const Ref<Message>& m : rec.Messages()) {
    if (const int* v = IntType().Get(*m)) got.push_back(*v);
  }
  // The oldest were kept; the newer ones refused.
  EXPECT_EQ(got, accepted);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front(), 0);
  EXPECT_EQ(sub.Stats().rejected, rejected);
  EXPECT_EQ(sub.Stats().dropped, 0u);
}

// -----------------------------------------------------------------------------------------
// BUS19 A throwing callback
// -----------------------------------------------------------------------------------------

TEST_P(BusModes, BUS19_ThrowingCallbackIsCaughtCountedAndReported) {
  LogCapture capture;
  Ref<Topic> topic = Topic::Create("bus19-throw");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(
      topic,
      [rec](const Message& m, bool is_final) {
        rec.Receive(m, is_final);
        if (StringOf(m) == "throw") throw std::runtime_error("bus19 callback failure");
      },
      options());
  EXPECT_NO_THROW(topic->Publish(StringType(), std::string("before")));
  EXPECT_NO_THROW(topic->Publish(StringType(), std::string("throw")));
  EXPECT_NO_THROW(topic->Publish(StringType(), std::string("after")));
  EXPECT_NO_THROW(topic->Publish(StringType(), std::string("throw")));
  EXPECT_NO_THROW(topic->Publish(StringType(), std::string("last")));
  ASSERT_TRUE(sub.Unsubscribe());
  ASSERT_TRUE(rec.WaitForFinal());
  ASSERT_TRUE(sub.Join());
  EXPECT_THAT(Strings(rec.Messages()), ElementsAre("before", "throw", "after", "throw", "last"));
  EXPECT_EQ(sub.Stats().failed, 2u);
  EXPECT_EQ(rec.FinalCount(), 1);
  EXPECT_THAT(capture.Text(), HasSubstr("bus19 callback failure"));
}

TEST_P(BusModes, BUS19_ThrowingFinalCallbackStillCompletesTheJoin) {
  Ref<Topic> topic = Topic::Create("bus19-final-throws");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(
      topic,
      [rec](const Message& m, bool is_final) {
        rec.Receive(m, is_final);
        if (is_final) throw std::runtime_error("bus19 final failure");
      },
      options());
  topic->Publish(StringType(), std::string("one"));
  bool joined = false;
  EXPECT_NO_THROW(joined = sub.UnsubscribeAndJoin());
  EXPECT_TRUE(joined);
  EXPECT_TRUE(rec.IsComplete());
  EXPECT_TRUE(sub.IsDone());
  EXPECT_EQ(sub.Stats().failed, 1u);
}

}  // namespace
}  // namespace plexus
