// The state manager's hard paths under concurrency: the last holder of a state letting go
// while another thread subscribes or publishes on the same id, iteration racing that churn,
// unsubscribing while a publisher publishes, and teardown in every order. Each thread checks
// invariants as it goes; the end state is checked once every thread has joined. Loop counts
// shrink under the sanitizers (BusScaled).

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/bus/state_manager.h"

namespace plexus {
namespace {

using plexus_test::BusScaled;
using plexus_test::Recorder;
using plexus_test::WaitUntil;

// The payload of the churn's messages: the id of the topic they were published on, so a
// reader can tell a message of its own state from one left over by an earlier state of the id.
const TypedMessageType<std::uint64_t>& TopicIdType() {
  static const auto type = TypedMessageType<std::uint64_t>::Create("StateStress.TopicId");
  return type;
}

// True when `last` is null or was published on `topic`.
bool BelongsTo(const Ref<Message>& last, const Ref<Topic>& topic) {
  if (last == nullptr) return true;
  const std::uint64_t* id = TopicIdType().Get(*last);
  return id != nullptr && *id == topic->Id();
}

bool NoStateTopicLeft(const std::string& prefix) {
  for (const TopicStats& s : ListTopics()) {
    if (s.name.rfind(prefix, 0) == 0) return false;
  }
  return true;
}

// Threads take and let go of holds on a few ids in every way at once, so the last holder of a
// state keeps racing a new one. While a thread holds a state, the manager must hand out that
// very state for the id (never a second one beside it), and its last message must be one
// published on its topic (never one left over by an earlier state of the id).
TEST(StateManagerStress, LastHolderRacesNewHolderOfTheSameId) {
  constexpr int kThreads = 4;
  const int rounds = BusScaled(3000);
  const std::array<const char*, 2> ids = {"x", "y"};
  Ref<StateManager> manager = StateManager::Create("race");
  std::atomic<int> failures{0};
  std::atomic<std::uint64_t> observed_subscribes{0};
  std::atomic<std::uint64_t> observed_unsubscribes{0};
  manager->AddObserver(StateObserver{
      .on_subscribe = [&](std::string_view, const Ref<Message>&) { ++observed_subscribes; },
      .on_unsubscribe = [&](std::string_view) { ++observed_unsubscribes; },
  });

  auto check = [&](const Ref<Topic>& held, std::string_view id) {
    if (manager->FindTopic(id) != held) ++failures;
    if (!BelongsTo(manager->LastMessage(id), held)) ++failures;
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const NodeId node(NodeId::Bytes{0x02, 0, 0, 0, 1, static_cast<std::uint8_t>(t)});
      for (int i = 0; i < rounds; ++i) {
        const char* id = ids[(i + t) % ids.size()];
        switch ((i * 7 + t) % 4) {
          case 0: {
            StateSubscriber s = manager->AddSubscriber(id);
            check(s.GetTopic(), id);
            if (!BelongsTo(s.LastMessage(), s.GetTopic())) ++failures;
            break;
          }
          case 1: {
            StatePublisher p = manager->AddPublisher(id);
            p.Publish(TopicIdType(), p.GetTopic()->Id());
            check(p.GetTopic(), id);
            break;
          }
          case 2: {
            // An implicit publisher: publish, check, remove (with a final message).
            StatePublisher witness = manager->AddPublisher(id);  // keeps the state for the check
            const Ref<Topic> topic = witness.GetTopic();
            manager->PublishById(id, node, TopicIdType().Make(topic->Id()));
            check(topic, id);
            if (!manager->RemovePublishById(id, node, TopicIdType().Make(topic->Id()))) {
              ++failures;
            }
            break;
          }
          case 3: {
            // A subscriber with a subscription, let go at once (pool: the final message is
            // handled later, on a pool thread, after the state may be gone).
            StateSubscriber s = manager->Subscribe(id, [](const Message&, bool) {});
            check(s.GetTopic(), id);
            break;
          }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(manager->StateCount(), 0u);
  EXPECT_EQ(observed_subscribes.load(), observed_unsubscribes.load());
  EXPECT_TRUE(WaitUntil([] { return NoStateTopicLeft("race/"); }));
}

// Iteration walks a snapshot while other threads make and remove states: every visited state
// has its id, and its last message belongs to it.
TEST(StateManagerStress, IterationRacesChurn) {
  const int rounds = BusScaled(2000);
  Ref<StateManager> manager = StateManager::Create("iter");
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::thread walker([&] {
    while (!stop.load()) {
      manager->ForEachState([&](std::string_view id, const Ref<Message>& last) {
        if (id.empty()) ++failures;
        const Ref<Topic> topic = manager->FindTopic(id);
        // The state may be gone (and even made again) since the snapshot: only a message of
        // the state now under this id can be checked against its topic.
        if (topic != nullptr && last != nullptr && TopicIdType().Get(*last) == nullptr) {
          ++failures;
        }
        return true;
      });
      manager->ForEachSubscribedState([](std::string_view, const Ref<Message>&) { return true; });
    }
  });
  std::vector<std::thread> churn;
  for (int t = 0; t < 2; ++t) {
    churn.emplace_back([&, t] {
      for (int i = 0; i < rounds; ++i) {
        const std::string id = std::to_string((i + t) % 16);
        StatePublisher p = manager->AddPublisher(id);
        p.Publish(TopicIdType(), p.GetTopic()->Id());
        if (i % 2 == 0) {
          StateSubscriber s = manager->AddSubscriber(id);
        }
      }
    });
  }
  for (std::thread& th : churn) th.join();
  stop = true;
  walker.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(manager->StateCount(), 0u);
}

// Subscribers of one state come and go (in every delivery mode) while a publisher publishes:
// each gets exactly one final message, nothing after it, and everything goes at the end.
TEST(StateManagerStress, UnsubscribeDuringPublish) {
  const int rounds = BusScaled(400);
  Ref<StateManager> manager = StateManager::Create("churn");
  StatePublisher publisher = manager->AddPublisher("x");
  std::atomic<bool> stop{false};
  std::thread publishing([&] {
    std::uint64_t n = 0;
    while (!stop.load()) publisher.Publish(TopicIdType(), n++);
  });
  std::vector<std::thread> subscribers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 3; ++t) {
    subscribers.emplace_back([&, t] {
      const DeliveryMode mode = plexus_test::AllModes()[t];
      for (int i = 0; i < rounds; ++i) {
        Recorder recorder;
        SubscriptionOptions options = plexus_test::InMode(mode);
        options.high_water = 1u << 30;  // a subscriber behind the publisher is expected here
        options.low_water = 1u << 29;
        StateSubscriber s = manager->Subscribe("x", recorder.Handler(), options);
        if (i % 2 == 0) {
          if (!s.UnsubscribeAndJoin()) ++failures;
        } else {
          s.Unsubscribe();
          if (!s.GetSubscription().Join()) ++failures;
        }
        if (recorder.FinalCount() != 1 || recorder.AfterFinalCount() != 0 ||
            recorder.OverlapCount() != 0) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& th : subscribers) th.join();
  stop = true;
  publishing.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(manager->HasState("x"));
  publisher.Release();
  EXPECT_EQ(manager->StateCount(), 0u);
  EXPECT_TRUE(WaitUntil([] { return NoStateTopicLeft("churn/"); }));
}

// The manager's own reference, a subscriber (with a pool subscription), a publisher, an
// implicit publisher and a subscription to "all" are let go in every order, each order on
// threads racing a publisher of the state: nothing is left behind.
TEST(StateManagerStress, TeardownInEveryOrder) {
  std::array<int, 5> order = {0, 1, 2, 3, 4};
  int orders = 0;
  do {
    SCOPED_TRACE(testing::Message()
                 << "order " << order[0] << order[1] << order[2] << order[3] << order[4]);
    Ref<StateManager> manager = StateManager::Create("teardown");
    const std::uint64_t all_id = manager->AllTopic()->Id();
    {
      Recorder on_state = Recorder::IgnoringChanges();
      Recorder on_all = Recorder::IgnoringChanges();
      StateSubscriber subscriber = manager->Subscribe("x", on_state.Handler());
      StatePublisher publisher = manager->AddPublisher("x");
      Subscription all = Subscribe(manager->AllTopic(), on_all.Handler());
      StateManager* raw = manager.get();
      const NodeId node(NodeId::Bytes{0x02, 0, 0, 0, 2, 1});
      raw->PublishById("x", node, TopicIdType().Make(0));
      // A second publisher races the teardown on its own hold, let go last.
      StatePublisher racer = manager->AddPublisher("x");
      std::atomic<bool> stop{false};
      std::thread racing([&] {
        while (!stop.load()) racer.Publish(TopicIdType(), 1);
      });
      for (int step : order) {
        switch (step) {
          case 0:
            manager.Reset();
            break;
          case 1:
            subscriber.Unsubscribe();
            break;
          case 2:
            publisher.Release();
            break;
          case 3:
            raw->RemovePublishById("x", node);  // the racer's hold keeps the manager alive
            break;
          case 4:
            plexus_test::Drop(all);
            break;
        }
      }
      stop = true;
      racing.join();
      EXPECT_TRUE(subscriber.GetSubscription().Join());
      racer.Release();  // the last holder: the manager goes with it
      EXPECT_TRUE(on_state.WaitForFinal());
      EXPECT_TRUE(on_all.WaitForFinal());
    }
    // The handles are gone (an unsubscribed subscription handle still holds its topic).
    EXPECT_TRUE(plexus_test::WaitForTopicGone(all_id));
    EXPECT_TRUE(WaitUntil([] { return NoStateTopicLeft("teardown/"); }));
    ++orders;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(orders, 120);
}

}  // namespace
}  // namespace plexus
