// Edge cases of the bus beyond the acceptance cases: node ids, misuse reports naming the
// caller, handle semantics (unsubscribe twice, moving, assigning over), topic pools by full
// name, declined types, the subscription-change type, listings, formatters, the typed face,
// PublishResult counts and congestion alerts.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/bus/json.h"
#include "plexus/core/misuse.h"
#include "plexus/exec/task_processor.h"

namespace plexus {
namespace {

using plexus_test::Gate;
using plexus_test::IntType;
using plexus_test::IsChange;
using plexus_test::LogCapture;
using plexus_test::Recorder;
using plexus_test::ScopedMisuseAction;
using plexus_test::StringOf;
using plexus_test::StringType;
using plexus_test::WaitUntil;
using ::testing::HasSubstr;

// --- NodeId ------------------------------------------------------------------------------

TEST(BusUnit, NodeIdParseAndToString) {
  const std::optional<NodeId> id = NodeId::Parse("02:1a:2b:3c:4d:ff");
  ASSERT_TRUE(id.has_value());
  EXPECT_FALSE(id->IsNone());
  EXPECT_EQ(id->bytes(), (NodeId::Bytes{0x02, 0x1a, 0x2b, 0x3c, 0x4d, 0xff}));
  EXPECT_EQ(id->ToString(), "02:1a:2b:3c:4d:ff");
  EXPECT_EQ(NodeId::Parse(id->ToString()), id);
  EXPECT_EQ(NodeId::Parse("00:00:00:00:00:00")->ToString(), "00:00:00:00:00:00");
  EXPECT_FALSE(NodeId::Parse("00:00:00:00:00:00")->IsNone());  // all zeros is still a node
  for (const char* bad :
       {"", "none", "02:1a:2b:3c:4d", "02:1a:2b:3c:4d:ff:00", "zz:1a:2b:3c:4d:ff", "021a2b3c4dff",
        "02-1a-2b-3c-4d-ff", "02:1a:2b:3c:4d:fff", "102:1a:2b:3c:4d:ff", "02:1a:2b:3c:4d:ff "}) {
    EXPECT_FALSE(NodeId::Parse(bad).has_value()) << '"' << bad << '"';
  }
  EXPECT_EQ(NodeId::None().ToString(), "none");
  EXPECT_TRUE(NodeId().IsNone());
  EXPECT_EQ(NodeId(), NodeId::None());
  EXPECT_FALSE(NodeId::None().IsLocal());
}

TEST(BusUnit, LocalNodeIdIsLocallyAdministeredAndSettable) {
  const NodeId local = NodeId::Local();
  EXPECT_FALSE(local.IsNone());
  EXPECT_TRUE(local.IsLocal());
  EXPECT_EQ(NodeId::Local(), local);  // chosen once
  EXPECT_NE(local.bytes()[0] & 0x02, 0) << local.ToString();

  const NodeId configured = *NodeId::Parse("0a:0b:0c:0d:0e:0f");
  Ref<Message> before = IntType().Make(1);
  SetLocalNodeId(configured);
  plexus_test::ScopeExit restore([&] { SetLocalNodeId(local); });
  EXPECT_EQ(NodeId::Local(), configured);
  EXPECT_TRUE(configured.IsLocal());
  Ref<Message> after = IntType().Make(2);
  EXPECT_EQ(after->Node(), configured);
  EXPECT_EQ(before->Node(), local);  // made earlier: keeps its id
}

// --- Misuse reports name the caller ------------------------------------------------------

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

// --- Handles -------------------------------------------------------------------------------

TEST(BusUnit, DefaultHandleIsEmptyAndAssigningAnEmptyOneUnsubscribes) {
  Subscription empty;
  EXPECT_FALSE(empty);
  EXPECT_EQ(empty.GetTopic(), nullptr);
  Ref<Topic> topic = Topic::Create("unit-default-handle");
  Recorder rec;
  Subscription sub = Subscription::Create(topic, rec.Handler());
  ASSERT_TRUE(sub);
  sub = Subscription();  // unsubscribes without waiting
  EXPECT_FALSE(sub);
  ASSERT_TRUE(rec.WaitForFinal());
  EXPECT_EQ(topic->SubscriberCount(), 0u);
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

TEST(BusUnit, IdsAndTopicOfAHandle) {
  Ref<Topic> topic = Topic::Create("unit-ids", "the description");
  Ref<Topic> other = Topic::Create("unit-ids");
  EXPECT_NE(topic->Id(), other->Id());  // names need not be unique; ids are
  EXPECT_EQ(topic->Description(), "the description");
  Recorder r1;
  Recorder r2;
  Subscription a = Subscription::Create(topic, r1.Handler());
  Subscription b = Subscription::Create(topic, r2.Handler());
  EXPECT_NE(a.Id(), b.Id());
  EXPECT_EQ(a.Id().rfind("unit-ids-", 0), 0u) << a.Id();
  EXPECT_EQ(a.GetTopic().get(), topic.get());
  EXPECT_EQ(topic->SubscriberCount(), 2u);
  EXPECT_TRUE(a.UnsubscribeAndJoin());
  EXPECT_TRUE(b.UnsubscribeAndJoin());
}

TEST(BusUnit, MovingAHandleMovesTheSubscription) {
  Ref<Topic> topic = Topic::Create("unit-move");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription a = Subscription::Create(topic, rec.Handler());
  const std::string id = a.Id();
  Subscription b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty
  ASSERT_TRUE(b);
  EXPECT_EQ(b.Id(), id);
  EXPECT_TRUE(b.IsSubscribed());
  Ref<Message> msg = IntType().Make(1);
  EXPECT_EQ(topic->Publish(msg).delivered, 1u);
  std::vector<Subscription> v;
  v.push_back(std::move(b));
  EXPECT_TRUE(v[0].UnsubscribeAndJoin());
  EXPECT_TRUE(rec.Contains(msg.get()));
  EXPECT_TRUE(rec.IsComplete());
}

TEST(BusUnit, AssigningOverASubscribedHandleUnsubscribes) {
  Ref<Topic> t1 = Topic::Create("unit-assign-1");
  Ref<Topic> t2 = Topic::Create("unit-assign-2");
  Recorder r1;
  Recorder r2;
  Subscription s = Subscription::Create(t1, r1.Handler());
  s = Subscription::Create(t2, r2.Handler());
  ASSERT_TRUE(r1.WaitForFinal());  // the first one was unsubscribed
  EXPECT_EQ(t1->SubscriberCount(), 0u);
  EXPECT_FALSE(r2.IsComplete());
  EXPECT_EQ(s.GetTopic().get(), t2.get());
  EXPECT_TRUE(s.IsSubscribed());
  EXPECT_TRUE(s.UnsubscribeAndJoin());
  EXPECT_TRUE(r2.IsComplete());
}

TEST(BusUnit, DroppingAHandleUnsubscribes) {
  for (DeliveryMode mode : plexus_test::AllModes()) {
    Ref<Topic> topic = Topic::Create("unit-drop");
    Recorder rec;
    {
      Subscription s = Subscription::Create(topic, rec.Handler(), plexus_test::InMode(mode));
      EXPECT_EQ(topic->SubscriberCount(), 1u);
    }
    EXPECT_EQ(topic->SubscriberCount(), 0u);
    ASSERT_TRUE(rec.WaitForFinal());
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

// --- Topic pool ---------------------------------------------------------------------------

TEST(BusUnit, TopicPoolDeleteAcceptsTheFullName) {
  Ref<TopicPool> pool = TopicPool::Create(Topic::Create("unit-pool"));
  Ref<Topic> a = pool->Get("alice");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->Name(), "unit-pool/alice");
  EXPECT_TRUE(pool->Exists("alice"));
  EXPECT_TRUE(pool->Delete("unit-pool/alice"));
  EXPECT_FALSE(pool->Exists("alice"));
  EXPECT_FALSE(pool->Delete("unit-pool/alice"));
  EXPECT_FALSE(pool->Delete("nobody"));
  Ref<Topic> b = pool->Get("bob");
  EXPECT_EQ(pool->Size(), 1u);
  EXPECT_TRUE(pool->Delete("bob"));
  EXPECT_EQ(pool->Size(), 0u);
}

// --- Declined types ------------------------------------------------------------------------

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

// --- Listings -----------------------------------------------------------------------------

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

// --- Formatters ---------------------------------------------------------------------------

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

// --- The typed face ---------------------------------------------------------------------------

TEST(BusUnit, TypedSubscribeSeesOnlyItsType) {
  for (DeliveryMode mode : plexus_test::AllModes()) {
    SCOPED_TRACE(plexus_test::ModeName(mode));
    Ref<Topic> topic = Topic::Create("unit-typed");
    auto values = std::make_shared<std::vector<int>>();
    auto mu = std::make_shared<std::mutex>();
    auto same_object = std::make_shared<std::atomic<int>>(0);
    Subscription sub = Subscribe(
        topic, IntType(),
        [values, mu, same_object](const int& v, const Message& m) {
          if (IntType().Get(m) == &v) same_object->fetch_add(1);
          std::lock_guard lock(*mu);
          values->push_back(v);
        },
        plexus_test::InMode(mode));
    EXPECT_EQ(topic->Publish(StringType(), std::string("not an int")).filtered, 1u);
    EXPECT_EQ(topic->Publish(IntType(), 7).delivered, 1u);
    EXPECT_EQ(topic->Publish(IntType(), 8).delivered, 1u);
    ASSERT_TRUE(sub.UnsubscribeAndJoin());
    std::lock_guard lock(*mu);
    EXPECT_EQ(*values, (std::vector<int>{7, 8}));
    EXPECT_EQ(same_object->load(), 2);
  }
}

TEST(BusUnit, SubscribeWithAOneArgumentCallable) {
  Ref<Topic> topic = Topic::Create("unit-one-arg");
  auto count = std::make_shared<plexus_test::Counter>();
  Subscription sub = Subscribe(topic, [count](const Message& m) {
    if (IntType().Get(m) != nullptr) count->Add();
  });
  topic->Publish(IntType(), 1);
  topic->Publish(IntType(), 2);
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_EQ(count->Value(), 2u);
}

// --- PublishResult ------------------------------------------------------------------------

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

// --- Alerts -------------------------------------------------------------------------------

TEST(BusUnit, AlertHandlerSeesRaiseThenClearAndTheSubsystemCount) {
  struct Change {
    std::string processor;
    bool raised;
    std::size_t subsystem_alerts;
  };
  auto changes = std::make_shared<std::vector<Change>>();
  auto mu = std::make_shared<std::mutex>();
  TaskProcessorAlertHandler previous =
      SetTaskProcessorAlertHandler([changes, mu](const TaskProcessorAlert& a) {
        if (a.subsystem != "bus") return;
        std::lock_guard lock(*mu);
        changes->push_back(Change{std::string(a.processor), a.raised, a.subsystem_alerts});
      });
  plexus_test::ScopeExit restore([&] { SetTaskProcessorAlertHandler(std::move(previous)); });
  auto count = [&] {
    std::lock_guard lock(*mu);
    return changes->size();
  };

  Ref<Topic> topic = Topic::Create("unit-alert");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  SubscriptionOptions opts;
  opts.mode = DeliveryMode::kDedicatedThread;
  opts.high_water = 5;
  opts.low_water = 0;
  opts.accepted_types = {IntType().get()};
  auto handled = std::make_shared<plexus_test::Counter>();
  Subscription sub = Subscription::Create(
      topic,
      [wait, handled](const Message& m, bool) {
        if (const int* v = IntType().Get(m); v != nullptr && *v == 0) wait();
        handled->Add();
      },
      opts);
  const std::size_t before = TaskProcessorSubsystemAlertCount("bus");
  topic->Publish(IntType(), 0);
  ASSERT_TRUE(gate.WaitForArrivals(1));
  for (int n = 1; n <= 10; ++n) topic->Publish(IntType(), n);
  ASSERT_TRUE(WaitUntil([&] { return count() >= 1; }));
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("bus"), before + 1);
  EXPECT_TRUE(sub.Stats().alerted);
  gate.Open();
  ASSERT_TRUE(handled->WaitFor(11));
  ASSERT_TRUE(WaitUntil([&] { return count() >= 2; }));
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("bus"), before);
  std::lock_guard lock(*mu);
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_TRUE((*changes)[0].raised);
  EXPECT_EQ((*changes)[0].subsystem_alerts, before + 1);
  EXPECT_FALSE((*changes)[1].raised);
  EXPECT_EQ((*changes)[1].subsystem_alerts, before);
  EXPECT_EQ((*changes)[0].processor, (*changes)[1].processor);
  EXPECT_THAT((*changes)[0].processor, HasSubstr(sub.Id()));
}

// --- Depth ------------------------------------------------------------------------------------

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

}  // namespace
}  // namespace plexus
