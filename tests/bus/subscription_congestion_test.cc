// Subscription congestion: a queue past its high-water mark raises a task-processor alert (its
// handler called, the "bus" subsystem's count raised) and clears it below the low-water mark, on
// the pool and on a dedicated thread; the alert handler may publish to the very queue it hears
// about; a bounded queue drops its oldest message without blocking the publisher, or rejects the
// new one at publish (BUS18).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
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
#include "plexus/exec/task_processor.h"

namespace plexus {
namespace {

using plexus_test::Gate;
using plexus_test::InMode;
using plexus_test::IntType;
using plexus_test::Recorder;
using plexus_test::ScopeExit;
using plexus_test::StringType;
using plexus_test::WaitUntil;
using ::testing::HasSubstr;

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

// -----------------------------------------------------------------------------------------
// Bounded queues
// -----------------------------------------------------------------------------------------

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

}  // namespace
}  // namespace plexus
