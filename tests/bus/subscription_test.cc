// Subscription handles and callbacks: an empty handle, ids and the topic of a handle, moving a
// handle, assigning over or dropping a subscribed handle (which unsubscribes), the typed and
// one-argument Subscribe faces, and a throwing callback, which is caught, counted and reported
// without stopping the subscription or its join (BUS19). Delivery cases run in each delivery
// mode.

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/exec/thread_pool.h"

namespace plexus {
namespace {

using plexus_test::IntType;
using plexus_test::LogCapture;
using plexus_test::Recorder;
using plexus_test::StringOf;
using plexus_test::Strings;
using plexus_test::StringType;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SubscriptionModes : public plexus_test::ModeTest {};

INSTANTIATE_TEST_SUITE_P(AllModes, SubscriptionModes, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// Handles
// -----------------------------------------------------------------------------------------

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

// -----------------------------------------------------------------------------------------
// The typed face
// -----------------------------------------------------------------------------------------

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

// -----------------------------------------------------------------------------------------
// BUS19 A throwing callback
// -----------------------------------------------------------------------------------------

TEST_P(SubscriptionModes, BUS19_ThrowingCallbackIsCaughtCountedAndReported) {
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

TEST_P(SubscriptionModes, BUS19_ThrowingFinalCallbackStillCompletesTheJoin) {
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

// A subscription made ready by a callback running on a worker of its pool (a callback that
// publishes) runs its turn next on that worker, taking the worker's run-next slot, rather than
// queueing behind the pool's other work and waking another thread.
TEST(BusUnit, ASubscriptionMadeReadyByACallbackRunsNextOnThatCallbacksWorker) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "bus-run-next", .initial_size = 2});
  SubscriptionOptions options;
  options.pool = pool;
  Ref<Topic> first = Topic::Create("unit-run-next-first");
  Ref<Topic> second = Topic::Create("unit-run-next-second");
  constexpr int kRounds = 200;
  std::atomic<int> same_thread{0};
  std::atomic<int> done{0};
  std::atomic<std::thread::id> publisher{};
  Subscription relay = Subscribe(
      first, IntType(),
      [&](const int& value, const Message&) {
        publisher.store(std::this_thread::get_id());
        second->Publish(IntType(), value);
      },
      options);
  Subscription sink = Subscribe(
      second, IntType(),
      [&](const int&, const Message&) {
        if (std::this_thread::get_id() == publisher.load()) same_thread.fetch_add(1);
        done.fetch_add(1);
      },
      options);
  for (int i = 0; i < kRounds; ++i) {
    first->Publish(IntType(), i);
    ASSERT_TRUE(plexus_test::WaitUntil([&] { return done.load() == i + 1; }));
  }
  // As for task processors (thread_pool_test.cc): a publisher that loses its CPU for longer
  // than the rescue delay may see an idle worker take the hand-off over, never most rounds.
  EXPECT_GT(same_thread.load(), kRounds / 2);
  EXPECT_TRUE(relay.UnsubscribeAndJoin());
  EXPECT_TRUE(sink.UnsubscribeAndJoin());
  pool->Shutdown();
}

}  // namespace
}  // namespace plexus
