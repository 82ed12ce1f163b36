// The state manager's acceptance cases CA15, CA16 and its part of CA17, and a test per further
// behaviour: the state's topic and its forward into "all", the three kinds of holder and the
// removal of a state with its last holder, observers, iteration, teardown orders, the lock
// order against topics, and the misuse reports. Races are in state_manager_stress_test.cc.
// Every wait is on a condition with a bound that only a failure reaches, never a sleep.

#include "plexus/bus/state_manager.h"

#include <cstddef>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/misuse.h"
#include "plexus/core/ref_debug.h"
#include "plexus/exec/thread_pool.h"
#include "plexus/sync/lock_order.h"

namespace plexus {
namespace {

using plexus_test::LogCapture;
using plexus_test::Recorder;
using plexus_test::ScopedMisuseAction;
using plexus_test::ScopedRefDebugging;
using plexus_test::StringOf;
using plexus_test::StringType;
using plexus_test::WaitUntil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

Ref<Message> Text(const std::string& text) {
  return StringType().Make(text);
}

std::string TextOf(const Ref<Message>& m) {
  return m != nullptr ? StringOf(*m) : std::string("<none>");
}

// What an observer heard, in order: "+id:last" for a subscriber, "-id" for one that left.
class ObserverLog {
 public:
  StateObserver Observer() {
    return StateObserver{
        .on_subscribe =
            [this](std::string_view id, const Ref<Message>& last) {
              Add("+" + std::string(id) + ":" + TextOf(last));
            },
        .on_unsubscribe = [this](std::string_view id) { Add("-" + std::string(id)); },
    };
  }
  std::vector<std::string> Events() const {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  void Add(std::string event) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
  }
  mutable std::mutex mu_;
  std::vector<std::string> events_;
};

// Switches reference debugging on for a test once the process-wide objects it uses exist (the
// shared pool, the message types), so that what remains tracked at the end is a leak.
class LeakCheck {
 public:
  LeakCheck() {
    (void)ThreadPool::Shared();
    (void)StringType();
    (void)SubscriptionChangeType();
    debugging_ = std::make_unique<ScopedRefDebugging>(true);
  }
  // Waits (bounded) for pool threads to let go of what they still hold, then expects nothing
  // tracked to be alive.
  void ExpectNoLeak() const {
    EXPECT_TRUE(WaitUntil([] { return LiveTrackedObjects().empty(); })) << RefDebugReport();
  }

 private:
  std::unique_ptr<ScopedRefDebugging> debugging_;
};

// -----------------------------------------------------------------------------
// CA15 explicit publishers
// -----------------------------------------------------------------------------

TEST(StateManager, CA15_ExplicitPublishers) {
  constexpr int kIds = 500;
  LeakCheck leaks;
  {
    Ref<StateManager> manager = StateManager::Create("foo");
    std::vector<StatePublisher> publishers;
    std::vector<StateSubscriber> subscribers;
    std::vector<Recorder> recorders;
    for (int i = 0; i < kIds; ++i) {
      const std::string id = std::to_string(i);
      publishers.push_back(manager->AddPublisher(id));
      recorders.push_back(Recorder::IgnoringChanges());
      subscribers.push_back(manager->Subscribe(id, recorders.back().Handler()));
    }
    EXPECT_EQ(manager->StateCount(), static_cast<std::size_t>(kIds));
    for (int i = 0; i < kIds; ++i) publishers[i].Publish(Text(std::to_string(i)));
    for (int i = 0; i < kIds; ++i) {
      ASSERT_TRUE(recorders[i].WaitForCount(1));
      EXPECT_THAT(plexus_test::Strings(recorders[i].Messages()), ElementsAre(std::to_string(i)));
    }
    std::size_t seen = 0;
    EXPECT_EQ(manager->ForEachState([&](std::string_view id, const Ref<Message>& last) {
      EXPECT_EQ(TextOf(last), std::string(id));
      ++seen;
      return true;
    }),
              static_cast<std::size_t>(kIds));
    EXPECT_EQ(seen, static_cast<std::size_t>(kIds));
    EXPECT_EQ(
        manager->ForEachSubscribedState([](std::string_view, const Ref<Message>&) { return true; }),
        static_cast<std::size_t>(kIds));

    for (StateSubscriber& s : subscribers) EXPECT_TRUE(s.UnsubscribeAndJoin());
    for (int i = 0; i < kIds; ++i) {
      EXPECT_EQ(recorders[i].FinalCount(), 1);
      EXPECT_EQ(recorders[i].AfterFinalCount(), 0);
    }
    publishers.clear();
    EXPECT_EQ(manager->StateCount(), 0u);
    for (int i = 0; i < kIds; ++i) EXPECT_FALSE(manager->HasState(std::to_string(i)));
    subscribers.clear();
    for (Recorder& r : recorders) r.Clear();  // recorded messages hold their notices' topics
    EXPECT_TRUE(WaitUntil([] {
      for (const TopicStats& s : ListTopics()) {
        if (s.name.rfind("foo/", 0) == 0) return false;
      }
      return true;
    }));
  }
  leaks.ExpectNoLeak();
}

// -----------------------------------------------------------------------------
// CA16 observers and iteration
// -----------------------------------------------------------------------------

TEST(StateManager, CA16_ObserversAndIteration) {
  Ref<StateManager> manager = StateManager::Create("foo");
  ObserverLog log;
  const std::uint64_t key = manager->AddObserver(log.Observer());

  StateSubscriber a = manager->AddSubscriber("a");
  StatePublisher b_publisher = manager->AddPublisher("b");
  b_publisher.Publish(Text("vb"));
  StateSubscriber b = manager->Subscribe("b", Recorder().Handler());
  StatePublisher c_only = manager->AddPublisher("c");  // a state held only by a publisher
  EXPECT_THAT(log.Events(), ElementsAre("+a:<none>", "+b:vb"));

  // Stopping ends the iteration at once.
  std::vector<std::string> visited;
  EXPECT_EQ(manager->ForEachState([&](std::string_view id, const Ref<Message>&) {
    visited.emplace_back(id);
    return false;
  }),
            1u);
  EXPECT_EQ(visited.size(), 1u);

  // Subscribed states only: "c" has a publisher and no subscriber.
  visited.clear();
  manager->ForEachSubscribedState([&](std::string_view id, const Ref<Message>&) {
    visited.emplace_back(id);
    return true;
  });
  EXPECT_THAT(visited, UnorderedElementsAre("a", "b"));
  visited.clear();
  manager->ForEachState([&](std::string_view id, const Ref<Message>&) {
    visited.emplace_back(id);
    return true;
  });
  EXPECT_THAT(visited, UnorderedElementsAre("a", "b", "c"));

  a.Unsubscribe();
  EXPECT_TRUE(b.UnsubscribeAndJoin());
  EXPECT_THAT(log.Events(), ElementsAre("+a:<none>", "+b:vb", "-a", "-b"));

  // A removed observer hears nothing more.
  EXPECT_TRUE(manager->RemoveObserver(key));
  EXPECT_FALSE(manager->RemoveObserver(key));
  StateSubscriber d = manager->AddSubscriber("d");
  d.Unsubscribe();
  EXPECT_EQ(log.Events().size(), 4u);
}

TEST(StateManager, CA16_SeveralObserversEachHearEveryChange) {
  Ref<StateManager> manager = StateManager::Create("foo");
  ObserverLog first;
  ObserverLog second;
  manager->AddObserver(first.Observer());
  const std::uint64_t second_key = manager->AddObserver(second.Observer());
  manager->AddObserver(StateObserver{});  // both functions empty: nothing to call
  { StateSubscriber x = manager->AddSubscriber("x"); }
  EXPECT_TRUE(manager->RemoveObserver(second_key));
  { StateSubscriber y = manager->AddSubscriber("y"); }
  EXPECT_THAT(first.Events(), ElementsAre("+x:<none>", "-x", "+y:<none>", "-y"));
  EXPECT_THAT(second.Events(), ElementsAre("+x:<none>", "-x"));
}

TEST(StateManager, CA16_PublisherOnlyStatesAreNotSubscribed) {
  Ref<StateManager> manager = StateManager::Create("foo");
  StatePublisher p = manager->AddPublisher("p");
  manager->PublishById("n", NodeId::Local(), Text("n1"));
  std::size_t calls = 0;
  EXPECT_EQ(manager->ForEachSubscribedState([&](std::string_view, const Ref<Message>&) {
    ++calls;
    return true;
  }),
            0u);
  EXPECT_EQ(calls, 0u);
  EXPECT_EQ(manager->ForEachState([](std::string_view, const Ref<Message>&) { return true; }), 2u);
}

// -----------------------------------------------------------------------------
// CA17 bad input (the state manager's part)
// -----------------------------------------------------------------------------

TEST(StateManager, CA17_EmptyIdIsRefused) {
  Ref<StateManager> manager = StateManager::Create("foo");
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->AddSubscriber(""));
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->Subscribe("", Recorder().Handler()));
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->AddPublisher(""));
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->PublishById("", NodeId::Local(), Text("x")));
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->RemovePublishById("", NodeId::Local()));
  EXPECT_EQ(manager->StateCount(), 0u);

  // Logged instead of thrown: the error names the call, and an empty handle comes back.
  LogCapture capture;
  ScopedMisuseAction log_only(MisuseAction::kLog);
  // clang-format off
  const int line = __LINE__; StateSubscriber s = manager->AddSubscriber("");
  // clang-format on
  EXPECT_FALSE(s);
  EXPECT_TRUE(plexus_test::LoggedAt(capture, __FILE__, line));
  EXPECT_THAT(capture.Text(), HasSubstr("StateManager::AddSubscriber: empty id"));
  EXPECT_FALSE(manager->AddPublisher(""));
  EXPECT_EQ(manager->PublishById("", NodeId::Local(), Text("x")).delivered, 0u);
  EXPECT_EQ(manager->StateCount(), 0u);
}

TEST(StateManager, CA17_PublishAfterLastHolderLetGoRecreatesCleanly) {
  Ref<StateManager> manager = StateManager::Create("foo");
  StatePublisher first = manager->AddPublisher("x");
  const std::uint64_t first_topic = first.GetTopic()->Id();
  first.Publish(Text("stale"));
  EXPECT_EQ(TextOf(manager->LastMessage("x")), "stale");
  EXPECT_TRUE(first.Release());
  EXPECT_FALSE(first.Release());
  EXPECT_FALSE(manager->HasState("x"));
  EXPECT_EQ(manager->LastMessage("x"), nullptr);
  EXPECT_TRUE(plexus_test::WaitForTopicGone(first_topic));

  // Subscribing again: a new state, with a new topic and no last message.
  StateSubscriber again = manager->AddSubscriber("x");
  EXPECT_NE(again.GetTopic()->Id(), first_topic);
  EXPECT_EQ(again.LastMessage(), nullptr);
  again.Unsubscribe();

  // Publishing by id again: the same.
  Recorder all = Recorder::IgnoringChanges();
  Subscription on_all = Subscribe(manager->AllTopic(), all.Handler());
  manager->PublishById("x", NodeId::Local(), Text("fresh"));
  EXPECT_EQ(TextOf(manager->LastMessage("x")), "fresh");
  EXPECT_TRUE(manager->RemovePublishById("x", NodeId::Local()));
  EXPECT_FALSE(manager->HasState("x"));
  ASSERT_TRUE(all.WaitForCount(1));
  EXPECT_THAT(plexus_test::Strings(all.Messages()), ElementsAre("fresh"));
}

// -----------------------------------------------------------------------------
// Topics and forwarding
// -----------------------------------------------------------------------------

TEST(StateManager, StateTopicIsNamedAfterTheManagerAndForwardedIntoAll) {
  Ref<StateManager> manager = StateManager::Create("foo");
  EXPECT_EQ(manager->Name(), "foo");
  EXPECT_EQ(manager->AllTopic()->Name(), "foo");
  Recorder all = Recorder::IgnoringChanges();
  Subscription on_all = Subscribe(manager->AllTopic(), all.Handler());
  StatePublisher p = manager->AddPublisher("alice@example");
  EXPECT_EQ(p.Id(), "alice@example");
  EXPECT_EQ(p.GetTopic()->Name(), "foo/alice@example");
  EXPECT_EQ(manager->FindTopic("alice@example"), p.GetTopic());
  EXPECT_EQ(manager->FindTopic("bob"), nullptr);
  p.Publish(Text("m1"));
  ASSERT_TRUE(all.WaitForCount(1));
  EXPECT_THAT(plexus_test::Strings(all.Messages()), ElementsAre("m1"));
}

TEST(StateManager, RemovedStateNoLongerForwardsIntoAll) {
  Ref<StateManager> manager = StateManager::Create("foo");
  Recorder all = Recorder::IgnoringChanges();
  Subscription on_all =
      Subscribe(manager->AllTopic(), all.Handler(), {.mode = DeliveryMode::kSynchronous});
  StatePublisher p = manager->AddPublisher("x");
  const Ref<Topic> topic = p.GetTopic();
  p.Release();
  topic->Publish(Text("after removal"));
  EXPECT_EQ(all.Count(), 0u);
  EXPECT_EQ(topic->Stats().forwards_out, 0u);
}

TEST(StateManager, IdsMayContainSlashes) {
  Ref<StateManager> manager = StateManager::Create("foo");
  StatePublisher p = manager->AddPublisher("PJSIP/alice/1");
  EXPECT_EQ(p.Id(), "PJSIP/alice/1");
  EXPECT_EQ(p.GetTopic()->Name(), "foo/PJSIP/alice/1");
  EXPECT_TRUE(manager->HasState("PJSIP/alice/1"));
  EXPECT_FALSE(manager->HasState("PJSIP/alice"));
}

// -----------------------------------------------------------------------------
// Holders and the lifetime of a state
// -----------------------------------------------------------------------------

TEST(StateManager, EveryKindOfHolderKeepsTheStateAlive) {
  Ref<StateManager> manager = StateManager::Create("foo");
  StateSubscriber s = manager->AddSubscriber("x");
  StatePublisher p = manager->AddPublisher("x");
  manager->PublishById("x", NodeId::Local(), Text("n"));
  EXPECT_EQ(manager->StateCount(), 1u);
  EXPECT_EQ(s.GetTopic(), p.GetTopic());  // one state, shared

  s.Unsubscribe();
  EXPECT_TRUE(manager->HasState("x"));
  p.Release();
  EXPECT_TRUE(manager->HasState("x"));
  EXPECT_TRUE(manager->RemovePublishById("x", NodeId::Local()));
  EXPECT_FALSE(manager->HasState("x"));
  EXPECT_EQ(manager->StateCount(), 0u);
}

TEST(StateManager, ImplicitPublishersAreCountedOncePerNode) {
  Ref<StateManager> manager = StateManager::Create("foo");
  const NodeId a(NodeId::Bytes{0x02, 0, 0, 0, 0, 1});
  const NodeId b(NodeId::Bytes{0x02, 0, 0, 0, 0, 2});
  manager->PublishById("x", a, Text("a1"));
  manager->PublishById("x", a, Text("a2"));
  manager->PublishById("x", b, Text("b1"));
  EXPECT_EQ(TextOf(manager->LastMessage("x")), "b1");
  EXPECT_TRUE(manager->RemovePublishById("x", a));
  EXPECT_FALSE(manager->RemovePublishById("x", a));  // a no longer publishes on x
  EXPECT_TRUE(manager->HasState("x"));
  EXPECT_TRUE(manager->RemovePublishById("x", b));
  EXPECT_FALSE(manager->HasState("x"));
  EXPECT_FALSE(manager->RemovePublishById("x", b));  // no such state
  EXPECT_FALSE(manager->RemovePublishById("y", a, Text("unused")));
  EXPECT_FALSE(manager->HasState("y"));  // a failed removal makes nothing
}

TEST(StateManager, NoNodeStandsForTheLocalNode) {
  Ref<StateManager> manager = StateManager::Create("foo");
  manager->PublishById("x", NodeId::None(), Text("local"));
  EXPECT_TRUE(manager->RemovePublishById("x", NodeId::Local()));
  EXPECT_FALSE(manager->HasState("x"));
  manager->PublishById("x", NodeId::Local(), Text("local"));
  EXPECT_TRUE(manager->RemovePublishById("x", NodeId::None()));
  EXPECT_FALSE(manager->HasState("x"));
}

TEST(StateManager, FinalMessageOfAnImplicitPublisherReachesTheSubscribers) {
  Ref<StateManager> manager = StateManager::Create("foo");
  Recorder recorder = Recorder::IgnoringChanges();
  StateSubscriber s = manager->Subscribe("x", recorder.Handler());
  const NodeId node(NodeId::Bytes{0x02, 0, 0, 0, 0, 7});
  manager->PublishById("x", node, Text("up"));
  EXPECT_TRUE(manager->RemovePublishById("x", node, Text("down")));
  ASSERT_TRUE(recorder.WaitForCount(2));
  EXPECT_THAT(plexus_test::Strings(recorder.Messages()), ElementsAre("up", "down"));
  EXPECT_EQ(TextOf(s.LastMessage()), "down");  // the subscriber still holds the state
}

TEST(StateManager, LastMessageFollowsEveryPublisher) {
  Ref<StateManager> manager = StateManager::Create("foo");
  StateSubscriber s = manager->AddSubscriber("x");
  EXPECT_EQ(s.LastMessage(), nullptr);
  StatePublisher p = manager->AddPublisher("x");
  p.Publish(Text("1"));
  EXPECT_EQ(TextOf(s.LastMessage()), "1");
  manager->PublishById("x", NodeId::Local(), Text("2"));
  EXPECT_EQ(TextOf(manager->LastMessage("x")), "2");
  p.Publish(StringType(), std::string("3"));
  EXPECT_EQ(TextOf(s.LastMessage()), "3");
  EXPECT_EQ(manager->LastMessage("nobody"), nullptr);
}

TEST(StateManager, HandlesLetGoWhenDroppedOrAssignedOver) {
  Ref<StateManager> manager = StateManager::Create("foo");
  {
    StateSubscriber s = manager->AddSubscriber("a");
    StatePublisher p = manager->AddPublisher("b");
    EXPECT_EQ(manager->StateCount(), 2u);
  }
  EXPECT_EQ(manager->StateCount(), 0u);

  StateSubscriber s = manager->AddSubscriber("a");
  s = manager->AddSubscriber("b");  // lets go of "a"
  EXPECT_FALSE(manager->HasState("a"));
  EXPECT_EQ(s.Id(), "b");
  StateSubscriber moved = std::move(s);
  EXPECT_FALSE(s);  // NOLINT(bugprone-use-after-move): a moved-from handle is empty
  EXPECT_FALSE(s.Unsubscribe());
  EXPECT_EQ(s.Id(), "");
  EXPECT_EQ(s.GetTopic(), nullptr);
  EXPECT_TRUE(manager->HasState("b"));

  StatePublisher p = manager->AddPublisher("c");
  p = manager->AddPublisher("d");
  EXPECT_FALSE(manager->HasState("c"));
  StatePublisher p2 = std::move(p);
  EXPECT_FALSE(p);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(p2.Id(), "d");
  EXPECT_EQ(manager->StateCount(), 2u);
}

TEST(StateManager, AddSubscriberHasNoSubscription) {
  Ref<StateManager> manager = StateManager::Create("foo");
  StateSubscriber s = manager->AddSubscriber("x");
  EXPECT_FALSE(s.GetSubscription());
  EXPECT_EQ(s.GetTopic()->Name(), "foo/x");
  EXPECT_TRUE(s.UnsubscribeAndJoin());
  EXPECT_FALSE(manager->HasState("x"));
}

class StateManagerModeTest : public plexus_test::ModeTest {};

TEST_P(StateManagerModeTest, SubscribeDeliversTheStatesMessagesThenTheFinalOne) {
  Ref<StateManager> manager = StateManager::Create("foo");
  Recorder recorder = Recorder::IgnoringChanges();
  StateSubscriber s = manager->Subscribe("x", recorder.Handler(), options());
  ASSERT_TRUE(s.GetSubscription());
  EXPECT_EQ(s.GetSubscription().GetTopic(), s.GetTopic());
  StatePublisher p = manager->AddPublisher("x");
  p.Publish(Text("1"));
  p.Publish(Text("2"));
  EXPECT_TRUE(s.UnsubscribeAndJoin());
  EXPECT_EQ(recorder.FinalCount(), 1);
  EXPECT_THAT(plexus_test::Strings(recorder.Messages()), ElementsAre("1", "2"));
  EXPECT_FALSE(s);
  EXPECT_TRUE(s.GetSubscription().IsDone());
}

TEST_P(StateManagerModeTest, UnsubscribeLetsGoAtOnceAndTheSubscriptionCanStillBeJoined) {
  Ref<StateManager> manager = StateManager::Create("foo");
  Recorder recorder;
  StateSubscriber s = manager->Subscribe("x", recorder.Handler(), options());
  EXPECT_TRUE(s.Unsubscribe());
  EXPECT_FALSE(manager->HasState("x"));
  EXPECT_TRUE(s.GetSubscription().Join());
  EXPECT_EQ(recorder.FinalCount(), 1);
}

INSTANTIATE_TEST_SUITE_P(Modes, StateManagerModeTest, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------
// Teardown and user code
// -----------------------------------------------------------------------------

TEST(StateManager, ManagerDroppedBeforeItsHolders) {
  LeakCheck leaks;
  {
    Ref<StateManager> manager = StateManager::Create("foo");
    const std::uint64_t all_topic = manager->AllTopic()->Id();
    Recorder recorder = Recorder::IgnoringChanges();
    StateSubscriber s = manager->Subscribe("x", recorder.Handler());
    StatePublisher p = manager->AddPublisher("y");
    manager.Reset();  // the handles keep it
    EXPECT_TRUE(plexus_test::ListedTopic(all_topic).has_value());
    StatePublisher px = std::move(p);
    px.Release();
    EXPECT_TRUE(s.UnsubscribeAndJoin());
    EXPECT_TRUE(plexus_test::WaitForTopicGone(all_topic));
  }
  leaks.ExpectNoLeak();
}

TEST(StateManager, DroppingTheManagerRemovesStatesHeldOnlyByImplicitPublishers) {
  LeakCheck leaks;
  {
    Ref<StateManager> manager = StateManager::Create("foo");
    const std::uint64_t all_topic = manager->AllTopic()->Id();
    manager->PublishById("x", NodeId::Local(), Text("never removed"));
    const std::uint64_t x_topic = manager->FindTopic("x")->Id();
    manager.Reset();
    EXPECT_TRUE(plexus_test::WaitForTopicGone(x_topic));
    EXPECT_TRUE(plexus_test::WaitForTopicGone(all_topic));
  }
  leaks.ExpectNoLeak();
}

TEST(StateManager, ObserversMayCallTheManager) {
  Ref<StateManager> manager = StateManager::Create("foo");
  std::vector<std::size_t> counts;
  StateManager* raw = manager.get();
  manager->AddObserver(StateObserver{
      .on_subscribe =
          [&, raw](std::string_view id, const Ref<Message>&) {
            EXPECT_TRUE(raw->HasState(id));
            counts.push_back(raw->StateCount());
            // Another state made from inside the notification, and dropped again.
            StatePublisher other = raw->AddPublisher("other");
          },
      .on_unsubscribe =
          [&, raw](std::string_view) {
            counts.push_back(
                raw->ForEachState([](std::string_view, const Ref<Message>&) { return true; }));
          },
  });
  StateSubscriber s = manager->AddSubscriber("x");
  s.Unsubscribe();
  EXPECT_THAT(counts, ElementsAre(1u, 0u));
  EXPECT_EQ(manager->StateCount(), 0u);
}

TEST(StateManager, VisitorsMayChangeTheStatesTheyWalk) {
  Ref<StateManager> manager = StateManager::Create("foo");
  std::vector<StateSubscriber> subscribers;
  for (const char* id : {"a", "b", "c"}) subscribers.push_back(manager->AddSubscriber(id));
  // The snapshot was taken when the walk began: dropping every holder from the first visit
  // still visits the three, each alive for its visit.
  std::vector<std::string> seen;
  EXPECT_EQ(manager->ForEachSubscribedState([&](std::string_view id, const Ref<Message>&) {
    seen.emplace_back(id);
    subscribers.clear();
    StatePublisher p = manager->AddPublisher("new");
    return true;
  }),
            3u);
  EXPECT_THAT(seen, UnorderedElementsAre("a", "b", "c"));
  EXPECT_EQ(manager->StateCount(), 0u);
}

TEST(StateManager, ThrowingObserverIsLoggedAndTheSubscriberStays) {
  Ref<StateManager> manager = StateManager::Create("foo");
  LogCapture capture;
  manager->AddObserver(StateObserver{
      .on_subscribe = [](std::string_view,
                         const Ref<Message>&) { throw std::runtime_error("observer failed"); },
      .on_unsubscribe = [](std::string_view) { throw std::runtime_error("observer failed"); },
  });
  ObserverLog after;
  manager->AddObserver(after.Observer());
  StateSubscriber s = manager->AddSubscriber("x");
  EXPECT_TRUE(s);
  EXPECT_TRUE(manager->HasState("x"));
  s.Unsubscribe();
  EXPECT_FALSE(manager->HasState("x"));
  EXPECT_THAT(capture.Text(), HasSubstr("observer failed"));
  EXPECT_THAT(after.Events(), ElementsAre("+x:<none>", "-x"));  // the next observer still hears
}

// A synchronous subscriber of a state's topic may call the manager from its callback: the
// manager never takes a topic's lock while holding its own, so no order is reported.
TEST(StateManager, SynchronousSubscriberMayCallTheManagerWithoutALockOrderReport) {
  ResetLockOrderState();
  const bool was_enabled = EnableLockOrderValidation(true);
  const std::uint64_t before = LockOrderViolationCount();
  {
    Ref<StateManager> manager = StateManager::Create("foo");
    StateManager* raw = manager.get();
    StateSubscriber s =
        manager->Subscribe("x",
                           [raw](const Message& m, bool is_final) {
                             if (is_final || plexus_test::IsChange(m)) return;
                             StateSubscriber inner = raw->AddSubscriber("y");
                             raw->PublishById("z", NodeId::Local(), Text("from a callback"));
                             raw->RemovePublishById("z", NodeId::Local());
                           },
                           {.mode = DeliveryMode::kSynchronous});
    // And the other way round: the manager's calls from outside any topic.
    StatePublisher p = manager->AddPublisher("x");
    p.Publish(Text("go"));
    StateSubscriber y = manager->AddSubscriber("y");
    p.Publish(Text("again"));
    EXPECT_TRUE(s.UnsubscribeAndJoin());
  }
  EXPECT_EQ(LockOrderViolationCount(), before);
  EnableLockOrderValidation(was_enabled);
  ResetLockOrderState();
}

// -----------------------------------------------------------------------------
// Misuse
// -----------------------------------------------------------------------------

TEST(StateManager, MisuseIsReportedAtTheCaller) {
  PLEXUS_EXPECT_MISUSE_HERE((void)StateManager::Create(""));
  Ref<StateManager> manager = StateManager::Create("foo");
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->Subscribe("x", MessageHandler()));
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->PublishById("x", NodeId::Local(), nullptr));
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->ForEachState(StateVisitor()));
  PLEXUS_EXPECT_MISUSE_HERE((void)manager->ForEachSubscribedState(StateVisitor()));
  StatePublisher empty;
  PLEXUS_EXPECT_MISUSE_HERE((void)empty.Publish(Text("x")));
  StatePublisher p = manager->AddPublisher("x");
  PLEXUS_EXPECT_MISUSE_HERE((void)p.Publish(Ref<Message>()));
  EXPECT_EQ(manager->LastMessage("x"), nullptr);
  p.Release();
  EXPECT_EQ(manager->StateCount(), 0u);  // the refused calls made no state
}

TEST(StateManager, UnsubscribeAndJoinFromItsOwnCallbackIsMisuseAndStillLetsGo) {
  Ref<StateManager> manager = StateManager::Create("foo");
  LogCapture capture;
  ScopedMisuseAction log_only(MisuseAction::kLog);
  auto holder = std::make_shared<StateSubscriber>();
  std::promise<bool> joined;
  std::future<bool> result = joined.get_future();
  StateSubscriber* target = holder.get();
  *holder = manager->Subscribe("x", [target, &joined](const Message& m, bool is_final) {
    if (is_final || plexus_test::IsChange(m)) return;
    joined.set_value(target->UnsubscribeAndJoin());
  });
  StatePublisher p = manager->AddPublisher("x");
  p.Publish(Text("go"));
  EXPECT_FALSE(result.get());
  EXPECT_FALSE(*holder);
  EXPECT_TRUE(holder->GetSubscription().Join());
  p.Release();
  EXPECT_EQ(manager->StateCount(), 0u);
}

}  // namespace
}  // namespace plexus
