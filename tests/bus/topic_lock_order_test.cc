// Topics and synchronous subscriptions in the lock-order validator (topic.h, "Lock order"): a
// synchronous callback that publishes elsewhere orders its topic before the other, and the
// opposite order is reported before it can deadlock.
//
// ThreadSanitizer has its own lock-order detector for pthread mutexes. The inverting publish
// here runs with LockOrderAction::kRefuse, so the validator throws LockOrderError before the
// topic's real lock is taken and TSan never sees the inversion; the two orders also run one
// after the other on one thread, so no real deadlock can happen.

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/sync/lock_order.h"

namespace plexus {
namespace {

using plexus_test::IntType;
using plexus_test::LogCapture;
using plexus_test::StringType;
using ::testing::HasSubstr;

class TopicLockOrderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ResetLockOrderState();
    previous_enabled_ = EnableLockOrderValidation(true);
    previous_action_ = SetLockOrderAction(LockOrderAction::kRefuse);
    SetLockOrderCallback([this](const LockOrderViolation& v) {
      std::lock_guard lock(mu_);
      violations_.push_back(v.message);
    });
    baseline_ = LockOrderViolationCount();
  }

  void TearDown() override {
    EnableLockOrderValidation(previous_enabled_);
    SetLockOrderCallback({});
    SetLockOrderAction(previous_action_);
    ResetLockOrderState();
  }

  std::uint64_t NewViolations() const { return LockOrderViolationCount() - baseline_; }
  std::vector<std::string> Violations() {
    std::lock_guard lock(mu_);
    return violations_;
  }

  LogCapture log_;  // reports and the refused callback are logged; keep them out of the output

 private:
  bool previous_enabled_ = false;
  LockOrderAction previous_action_ = LockOrderAction::kLog;
  std::uint64_t baseline_ = 0;
  std::mutex mu_;
  std::vector<std::string> violations_;
};

// A synchronous subscriber of `from` that publishes a string on `to` for every number.
Subscription Relay(const Ref<Topic>& from, const Ref<Topic>& to) {
  SubscriptionOptions opts;
  opts.mode = DeliveryMode::kSynchronous;
  return Subscribe(
      from,
      [to](const Message& m) {
        if (IntType().Get(m) != nullptr) to->Publish(StringType(), std::string("relayed"));
      },
      opts);
}

TEST_F(TopicLockOrderTest, SynchronousPublishCycleIsReportedBeforeItDeadlocks) {
  Ref<Topic> a = Topic::Create("lock-order-a");
  Ref<Topic> b = Topic::Create("lock-order-b");
  Subscription a_to_b = Relay(a, b);
  Subscription b_to_a = Relay(b, a);

  // A's callback publishes on B: A before B, fine on its own.
  a->Publish(IntType(), 1);
  EXPECT_EQ(NewViolations(), 0u);
  EXPECT_EQ(a_to_b.Stats().failed, 0u);

  // B's callback publishes on A: the opposite order, which two threads doing both at once
  // would deadlock on. Refused before A's lock is taken; the callback's throw is caught.
  b->Publish(IntType(), 2);
  EXPECT_EQ(NewViolations(), 1u);
  EXPECT_EQ(b_to_a.Stats().failed, 1u);
  const std::vector<std::string> reports = Violations();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_THAT(reports[0], HasSubstr("lock-order-a"));
  EXPECT_THAT(reports[0], HasSubstr("lock-order-b"));

  ASSERT_TRUE(a_to_b.UnsubscribeAndJoin());
  ASSERT_TRUE(b_to_a.UnsubscribeAndJoin());
}

// Publishing on the topic a synchronous callback runs for, or chaining topics one way, orders
// nothing against itself: no report.
TEST_F(TopicLockOrderTest, OneWayChainsAndSelfPublishesAreNotReported) {
  Ref<Topic> a = Topic::Create("lock-order-chain-a");
  Ref<Topic> b = Topic::Create("lock-order-chain-b");
  Ref<Topic> c = Topic::Create("lock-order-chain-c");
  Subscription a_to_b = Relay(a, b);
  Subscription b_to_c = Relay(b, c);
  Subscription a_to_a = Relay(a, a);
  SubscriptionOptions pool;
  Subscription on_c = Subscribe(
      c, [](const Message&) {}, pool);
  for (int i = 0; i < 3; ++i) a->Publish(IntType(), i);
  b->Publish(IntType(), 9);
  EXPECT_EQ(NewViolations(), 0u);
  EXPECT_EQ(a_to_b.Stats().failed + b_to_c.Stats().failed + a_to_a.Stats().failed, 0u);
  ASSERT_TRUE(on_c.UnsubscribeAndJoin());
}

// A message router changes its subscription's filter (which may take the topic's lock) without
// holding its own lock, and a synchronous route changes routes (taking the router's lock) under
// the topic's lock: the two never nest the other way round, so the validator sees one order.
// Before, AddRoute held the router's lock while the filter took the topic's, and a route
// callback removing a route took them the other way: a deadlock between a thread adding a
// route and a synchronous publish, reported here.
TEST_F(TopicLockOrderTest, RouterRouteChangesNeverOrderItsLockAgainstTheTopics) {
  Ref<Topic> topic = Topic::Create("lock-order-router");
  SubscriptionOptions sync;
  sync.mode = DeliveryMode::kSynchronous;
  MessageRouter router = MessageRouter::Create(topic, sync);
  ASSERT_TRUE(router.AddRoute(StringType(), [](const std::string&, const Message&) {}));
  int changes = 0;
  ASSERT_TRUE(router.AddRoute(IntType(), [&](const int&, const Message&) {
    // From a route callback of a synchronous router: the topic's lock is held.
    if (router.RemoveRoute(StringType())) ++changes;
    if (router.AddRoute(StringType(), [](const std::string&, const Message&) {})) ++changes;
  }));
  topic->Publish(IntType(), 1);
  // And from outside again, after the inner order was seen.
  ASSERT_TRUE(router.RemoveRoute(StringType()));
  ASSERT_TRUE(router.AddRoute(StringType(), [](const std::string&, const Message&) {}));
  topic->Publish(IntType(), 2);
  EXPECT_EQ(changes, 4);
  EXPECT_EQ(NewViolations(), 0u) << (Violations().empty() ? "" : Violations()[0]);
  EXPECT_EQ(router.Stats().failed, 0u);
  ASSERT_TRUE(router.UnsubscribeAndJoin());
}

}  // namespace
}  // namespace plexus
