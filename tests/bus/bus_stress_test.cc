// Stress tests for the bus: races between unsubscribe and publishers, forward cancel and
// publish, dropping a topic's last reference and subscribing, PublishAndWait from several
// threads, ordering under concurrency, thousands of pool subscriptions on a small pool, a
// drop-oldest queue under a slow consumer, congestion alerts raised by publishers while the turn
// clears them, and the listings racing routers and caches that come
// and go. Each runs for every delivery mode where that makes
// sense; loops shrink in sanitized builds (BusScaled). No sleeps, no timing thresholds: every
// check is a property that a wrong implementation breaks.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/internal/cpu_relax.h"
#include "plexus/exec/task_processor.h"
#include "plexus/exec/thread_pool.h"

namespace plexus {
namespace {

using plexus_test::BusScaled;
using plexus_test::Counter;
using plexus_test::Gate;
using plexus_test::InMode;
using plexus_test::IntType;
using plexus_test::Recorder;
using plexus_test::ScopeExit;
using plexus_test::Seq;
using plexus_test::SeqType;
using plexus_test::StringType;
using plexus_test::WaitUntil;

class BusStress : public ::testing::TestWithParam<DeliveryMode> {
 protected:
  DeliveryMode mode() const { return GetParam(); }
  SubscriptionOptions options() const { return InMode(mode()); }
};

INSTANTIATE_TEST_SUITE_P(AllModes, BusStress, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// Runs `body(index)` on `n` threads and joins them.
template <class F>
void RunThreads(int n, F body) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) threads.emplace_back([&body, i] { body(i); });
  for (std::thread& t : threads) t.join();
}

// Publishers that run until stopped (joined by the destructor, so an early ASSERT return
// stops them too).
class Publishers {
 public:
  template <class F>
  Publishers(int n, F body) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, body, i]() mutable {
        int k = 0;
        while (!stop_.load(std::memory_order_relaxed)) body(i, k++);
      });
    }
  }
  ~Publishers() { Stop(); }
  Publishers(const Publishers&) = delete;
  Publishers& operator=(const Publishers&) = delete;
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

TEST_P(BusStress, UnsubscribeRacesPublishersFinalIsLastAndOnce) {
  const int rounds = BusScaled(60);
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(round);
    Ref<Topic> topic = Topic::Create("stress-unsub");
    Recorder rec;
    Subscription sub = Subscription::Create(topic, rec.Handler(), options());
    std::atomic<bool> joined{false};
    std::atomic<int> after_join{0};
    {
      Publishers publishers(3, [&](int p, int k) {
        topic->Publish(SeqType(), Seq{p, k});
        if (joined.load()) after_join.fetch_add(1);
      });
      ASSERT_TRUE(rec.WaitForCount(static_cast<std::size_t>(1 + round % 20)));
      if (round % 2 == 0) {
        ASSERT_TRUE(sub.UnsubscribeAndJoin());
      } else {
        // Unsubscribe from one thread, join from another.
        std::thread unsubscriber([&] { sub.Unsubscribe(); });
        unsubscriber.join();
        ASSERT_TRUE(sub.Join());
      }
      joined = true;
      EXPECT_TRUE(rec.IsComplete());
      ASSERT_TRUE(WaitUntil([&] { return after_join.load() >= 30; }));
    }
    EXPECT_EQ(rec.FinalCount(), 1);
    EXPECT_EQ(rec.AfterFinalCount(), 0);
    EXPECT_EQ(rec.OverlapCount(), 0);
    const std::vector<Ref<Message>> got = rec.Messages();
    ASSERT_FALSE(got.empty());
    EXPECT_TRUE(IsFinalMessage(*got.back(), sub.Id()));
    // Per publisher, what arrived is in publish order (no duplicates).
    std::vector<int> last(3, -1);
    for (const Ref<Message>& m : got) {
      if (const Seq* s = SeqType().Get(*m)) {
        EXPECT_GT(s->n, last[static_cast<std::size_t>(s->source)]);
        last[static_cast<std::size_t>(s->source)] = s->n;
      }
    }
    if (HasFailure()) return;
  }
}

TEST_P(BusStress, ManySubscribersUnsubscribingWhilePublishing) {
  const int subscribers = BusScaled(40);
  Ref<Topic> topic = Topic::Create("stress-many-unsub");
  std::vector<Recorder> recs;
  std::vector<Subscription> subs;
  for (int i = 0; i < subscribers; ++i) {
    recs.push_back(Recorder::IgnoringChanges());
    subs.push_back(Subscription::Create(topic, recs.back().Handler(), options()));
  }
  {
    Publishers publishers(2, [&](int p, int k) { topic->Publish(SeqType(), Seq{p, k}); });
    // Each subscriber leaves from its own thread, halfway through the publishing.
    RunThreads(4, [&](int t) {
      for (int i = t; i < subscribers; i += 4) {
        recs[static_cast<std::size_t>(i)].WaitForCount(1);
        subs[static_cast<std::size_t>(i)].Unsubscribe();
      }
    });
    for (Subscription& s : subs) ASSERT_TRUE(s.Join());
  }
  for (Recorder& r : recs) {
    EXPECT_EQ(r.FinalCount(), 1);
    EXPECT_EQ(r.AfterFinalCount(), 0);
    EXPECT_EQ(r.OverlapCount(), 0);
  }
  EXPECT_EQ(topic->SubscriberCount(), 0u);
}

TEST_P(BusStress, ForwardCancelRacesPublish) {
  const int rounds = BusScaled(60);
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(round);
    Ref<Topic> parent = Topic::Create("stress-fwd-parent");
    Ref<Topic> child = Topic::Create("stress-fwd-child");
    Recorder parent_rec = Recorder::IgnoringChanges();
    Subscription ps = Subscription::Create(parent, parent_rec.Handler(), options());
    Forward forward = ForwardAll(child, parent);
    ASSERT_TRUE(forward.IsActive());
    std::atomic<bool> cancelled{false};
    std::atomic<int> after_cancel{0};
    {
      // Each publisher marks what it publishes after seeing the cancel as source 100 + p:
      // none of those may reach the parent.
      Publishers publishers(3, [&](int p, int k) {
        const bool late = cancelled.load();
        child->Publish(SeqType(), Seq{late ? 100 + p : p, k});
        if (late) after_cancel.fetch_add(1);
      });
      ASSERT_TRUE(parent_rec.WaitForCount(static_cast<std::size_t>(1 + round % 10)));
      if (round % 2 == 0) {
        forward.Cancel();
      } else {
        forward = Forward();  // destroying the handle cancels
      }
      cancelled = true;
      ASSERT_TRUE(WaitUntil([&] { return after_cancel.load() >= 30; }));
    }
    ASSERT_TRUE(ps.UnsubscribeAndJoin());
    for (const Ref<Message>& m : parent_rec.Messages()) {
      const Seq* s = SeqType().Get(*m);
      ASSERT_NE(s, nullptr);
      ASSERT_LT(s->source, 100) << "a publish that started after Cancel returned was forwarded";
    }
    EXPECT_EQ(parent->Stats().forwarded_in, parent_rec.Count());
  }
}

TEST_P(BusStress, TopicDropRacesSubscribe) {
  // Two threads hold the only references to a fresh topic; one subscribes (and unsubscribes)
  // while the other drops its reference, so the last reference goes on either thread — or on
  // a delivery thread, after the final message. A lister walks the registry meanwhile.
  const int rounds = BusScaled(300);
  std::atomic<bool> stop_lister{false};
  std::thread lister([&] {
    while (!stop_lister.load()) {
      (void)ListTopics();
      (void)ListSubscriptions();
      (void)LiveTopicCount();
    }
  });
  ScopeExit stop([&] {
    stop_lister = true;
    lister.join();
  });
  std::vector<std::uint64_t> ids;
  for (int round = 0; round < rounds; ++round) {
    Ref<Topic> topic = Topic::Create("stress-drop");
    ids.push_back(topic->Id());
    Ref<Topic> other = topic;
    Recorder rec;
    std::atomic<bool> go{false};
    std::thread subscriber([&, t = std::move(other)]() mutable {
      while (!go.load()) {
      }
      Subscription sub = Subscription::Create(t, rec.Handler(), options());
      t = nullptr;
      t = sub.GetTopic();
      t->Publish(IntType(), round);
      t = nullptr;
      sub.Unsubscribe();  // no join: the handle goes, the final message follows
    });
    std::thread dropper([&] {
      while (!go.load()) {
      }
      topic = nullptr;
    });
    go = true;
    subscriber.join();
    dropper.join();
    ASSERT_TRUE(rec.WaitForFinal()) << round;
    EXPECT_EQ(rec.FinalCount(), 1);
    EXPECT_EQ(rec.AfterFinalCount(), 0);
  }
  // Every topic goes away once its last holder let go.
  for (std::uint64_t id : ids) EXPECT_TRUE(plexus_test::WaitForTopicGone(id)) << id;
}

TEST(BusStressPool, PoolGetDeleteRacesPublish) {
  const int rounds = BusScaled(2000);
  Ref<Topic> all = Topic::Create("stress-pool-all");
  Ref<TopicPool> pool = TopicPool::Create(all);
  auto received_ptr = std::make_shared<Counter>();
  Counter& received = *received_ptr;
  Subscription sub = Subscribe(all, [received_ptr](const Message& m) {
    if (IntType().Get(m) != nullptr) received_ptr->Add();
  });
  std::atomic<std::uint64_t> delivered{0};
  RunThreads(3, [&](int t) {
    for (int i = 0; i < rounds; ++i) {
      const std::string name = plexus_test::Cat({"n", std::to_string(i % 7)});
      if (t == 0 && i % 3 == 0) {
        pool->Delete(name);
      } else if (Ref<Topic> topic = pool->Get(name)) {
        delivered += topic->Publish(IntType(), i).delivered;
      }
    }
  });
  EXPECT_TRUE(received.WaitFor(delivered.load()));
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_EQ(received.Value(), delivered.load());
  EXPECT_LE(pool->Size(), 7u);
}

// Routers, caches and caching topics come and go (their handles dropped in a different order
// each round, routes changed while updates flow) while a lister renders every listing: a
// listing never reads a router or cache that is being destroyed, and each is gone from the
// listings once its last holder let go.
TEST_P(BusStress, ListingsRaceRoutersAndCachesComingAndGoing) {
  const int rounds = BusScaled(200);
  std::atomic<bool> stop_lister{false};
  std::thread lister([&] {
    while (!stop_lister.load()) {
      (void)BusStatsText();
      (void)LiveRouterCount();
      (void)LiveCacheCount();
    }
  });
  ScopeExit stop([&] {
    stop_lister = true;
    lister.join();
  });
  const std::size_t routers_before = LiveRouterCount();
  const std::size_t caches_before = LiveCacheCount();
  for (int round = 0; round < rounds; ++round) {
    Ref<Topic> original = Topic::Create("stress-listed");
    Ref<Cache> cache = Cache::Create([](const Message& m) -> std::string {
      const int* value = IntType().Get(m);
      return value != nullptr ? std::to_string(*value % 4) : std::string();
    });
    Ref<CachingTopic> caching = CachingTopic::Create(original, cache);
    MessageRouter router = MessageRouter::Create(caching->Output(), options());
    // Shared with the route: its last Add may still be notifying when the round ends.
    auto updates = std::make_shared<Counter>();
    ASSERT_TRUE(
        router.AddCacheRoute(IntType().get(), [updates](const Message&) { updates->Add(); }));
    router.AddRoute(StringType().get(), [](const Message&) {});
    for (int i = 0; i < 8; ++i) original->Publish(IntType().Make(i));
    ASSERT_TRUE(updates->WaitFor(8));
    if (round % 2 == 0) router.RemoveCacheRoute(IntType().get());
    switch (round % 3) {
      case 0:
        router = MessageRouter();
        caching = nullptr;
        cache = nullptr;
        break;
      case 1:
        cache = nullptr;
        caching = nullptr;
        router.Unsubscribe();
        router = MessageRouter();
        break;
      default:
        caching = nullptr;
        router.UnsubscribeAndJoin();
        cache = nullptr;
        router = MessageRouter();
        break;
    }
    original = nullptr;
  }
  // Each router's core and each cache goes once its last holder (a final message) let go.
  EXPECT_TRUE(WaitUntil([&] { return LiveRouterCount() <= routers_before; }));
  EXPECT_TRUE(WaitUntil([&] { return LiveCacheCount() <= caches_before; }));
}

TEST_P(BusStress, PublishAndWaitFromSeveralThreads) {
  constexpr int kThreads = 4;
  const int per_thread = BusScaled(300);
  Ref<Topic> topic = Topic::Create("stress-wait");
  Recorder rec = Recorder::IgnoringChanges();
  Subscription target = Subscription::Create(topic, rec.Handler(), options());
  // A second subscriber and plain publishers, to crowd the topic.
  Recorder bystander = Recorder::IgnoringChanges();
  Subscription other = Subscription::Create(topic, bystander.Handler(), options());
  std::atomic<int> missing{0};
  {
    // The noise keeps a few hundred messages queued, no more: a flood that outran the
    // subscribers would put every PublishAndWait behind an ever longer queue.
    Publishers noise(1, [&](int, int k) {
      if (target.Stats().depth > 256 || other.Stats().depth > 256) {
        std::this_thread::yield();
        return;
      }
      topic->Publish(IntType(), k);
    });
    RunThreads(kThreads, [&](int t) {
      for (int i = 0; i < per_thread; ++i) {
        Ref<Message> msg = SeqType().Make(Seq{t, i});
        topic->PublishAndWait(msg, target);
        if (!rec.Contains(msg.get())) missing.fetch_add(1);
      }
    });
  }
  EXPECT_EQ(missing.load(), 0) << "PublishAndWait returned before the callback had handled it";
  ASSERT_TRUE(target.UnsubscribeAndJoin());
  ASSERT_TRUE(other.UnsubscribeAndJoin());
  EXPECT_EQ(rec.OverlapCount(), 0);
  std::size_t seqs = 0;
  for (const Ref<Message>& m : rec.Messages()) seqs += SeqType().Get(*m) != nullptr ? 1 : 0;
  EXPECT_EQ(seqs, static_cast<std::size_t>(kThreads * per_thread));
}

TEST_P(BusStress, OrderPerPublisherThroughChildrenUnderConcurrency) {
  constexpr int kThreads = 4;
  constexpr int kChildren = 5;
  const int per_thread = BusScaled(2000);
  Ref<Topic> parent = Topic::Create("stress-order-parent");
  std::vector<Ref<Topic>> children;
  std::vector<Forward> forwards;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(Topic::Create("stress-order-child"));
    forwards.push_back(ForwardAll(children.back(), parent));
  }
  std::vector<Recorder> recs;
  std::vector<Subscription> subs;
  for (int i = 0; i < 2; ++i) {
    recs.push_back(Recorder::IgnoringChanges());
    subs.push_back(Subscription::Create(parent, recs.back().Handler(), options()));
  }
  // A subscriber on one child too: it sees that child's share in each thread's order.
  Recorder child_rec = Recorder::IgnoringChanges();
  Subscription child_sub = Subscription::Create(children[0], child_rec.Handler(), options());
  RunThreads(kThreads, [&](int t) {
    std::uint32_t x = 777u + static_cast<std::uint32_t>(t);
    for (int n = 0; n < per_thread; ++n) {
      x = x * 1664525u + 1013904223u;
      children[(x >> 8) % kChildren]->Publish(SeqType(), Seq{t, n});
    }
  });
  for (Subscription& s : subs) ASSERT_TRUE(s.UnsubscribeAndJoin());
  ASSERT_TRUE(child_sub.UnsubscribeAndJoin());
  for (std::size_t r = 0; r < recs.size(); ++r) {
    SCOPED_TRACE(r);
    std::vector<int> next(kThreads, 0);
    std::size_t count = 0;
    for (const Ref<Message>& m : recs[r].Messages()) {
      const Seq* s = SeqType().Get(*m);
      ASSERT_NE(s, nullptr);
      ASSERT_EQ(s->n, next[static_cast<std::size_t>(s->source)]) << "thread " << s->source;
      ++next[static_cast<std::size_t>(s->source)];
      ++count;
    }
    EXPECT_EQ(count, static_cast<std::size_t>(kThreads * per_thread));
  }
  std::vector<int> last(kThreads, -1);
  for (const Ref<Message>& m : child_rec.Messages()) {
    const Seq* s = SeqType().Get(*m);
    ASSERT_NE(s, nullptr);
    ASSERT_GT(s->n, last[static_cast<std::size_t>(s->source)]);
    last[static_cast<std::size_t>(s->source)] = s->n;
  }
}

TEST(BusStressPool, ThousandsOfPoolSubscriptionsOnASmallPool) {
  const int subscriptions = BusScaled(3000);
  constexpr int kMessages = 5;
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "bus-stress", .initial_size = 2});
  Ref<Topic> topic = Topic::Create("stress-thousands");
  // Shared with the callbacks, so a failing test that returns early frees nothing in use.
  auto received_ptr = std::make_shared<Counter>();
  auto finals_ptr = std::make_shared<Counter>();
  Counter& received = *received_ptr;
  Counter& finals = *finals_ptr;
  std::vector<Subscription> subs;
  subs.reserve(static_cast<std::size_t>(subscriptions));
  SubscriptionOptions opts;
  opts.mode = DeliveryMode::kPool;
  opts.pool = pool;
  opts.accepted_types = {IntType().get()};  // no O(n^2) notices
  for (int i = 0; i < subscriptions; ++i) {
    subs.push_back(Subscription::Create(
        topic,
        [received_ptr, finals_ptr](const Message& m, bool is_final) {
          if (is_final) {
            finals_ptr->Add();
          } else if (IntType().Get(m) != nullptr) {
            received_ptr->Add();
          }
        },
        opts));
  }
  EXPECT_EQ(topic->SubscriberCount(), static_cast<std::size_t>(subscriptions));
  for (int n = 0; n < kMessages; ++n) {
    EXPECT_EQ(topic->Publish(IntType(), n).delivered, static_cast<std::uint32_t>(subscriptions));
  }
  ASSERT_TRUE(received.WaitFor(static_cast<std::size_t>(subscriptions * kMessages)));
  for (Subscription& s : subs) s.Unsubscribe();
  ASSERT_TRUE(finals.WaitFor(static_cast<std::size_t>(subscriptions)));
  for (Subscription& s : subs) ASSERT_TRUE(s.Join());
  EXPECT_EQ(received.Value(), static_cast<std::size_t>(subscriptions * kMessages));
  EXPECT_EQ(finals.Value(), static_cast<std::size_t>(subscriptions));
  subs.clear();
}

TEST(BusStressPool, ThousandsOfTopicsWithOneSubscriptionEach) {
  const int topics = BusScaled(2000);
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "bus-stress-2", .initial_size = 2});
  auto received_ptr = std::make_shared<Counter>();
  Counter& received = *received_ptr;
  std::vector<Ref<Topic>> ts;
  std::vector<Subscription> subs;
  SubscriptionOptions opts;
  opts.pool = pool;
  for (int i = 0; i < topics; ++i) {
    ts.push_back(Topic::Create(plexus_test::Cat({"stress-topic-", std::to_string(i)})));
    subs.push_back(Subscribe(
        ts.back(),
        [received_ptr](const Message& m) {
          if (IntType().Get(m) != nullptr) received_ptr->Add();
        },
        opts));
  }
  RunThreads(2, [&](int t) {
    for (int i = t; i < topics; i += 2) ts[static_cast<std::size_t>(i)]->Publish(IntType(), i);
  });
  ASSERT_TRUE(received.WaitFor(static_cast<std::size_t>(topics)));
  for (Subscription& s : subs) ASSERT_TRUE(s.UnsubscribeAndJoin());
  EXPECT_EQ(received.Value(), static_cast<std::size_t>(topics));
}

TEST_P(BusStress, DropOldestUnderASlowConsumerNeverBlocksPublishers) {
  if (mode() == DeliveryMode::kSynchronous) GTEST_SKIP() << "no queue";
  constexpr std::size_t kCapacity = 16;
  constexpr int kPublishers = 3;
  const int per_publisher = BusScaled(5000);
  Ref<Topic> topic = Topic::Create("stress-drop-oldest");
  Gate gate;
  Gate::Waiter wait = gate.waiter();
  Recorder rec = Recorder::IgnoringChanges();
  Ref<Message> blocker = StringType().Make("block");
  const Message* blocker_ptr = blocker.get();
  SubscriptionOptions opts = options();
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
  std::atomic<int> done{0};
  std::atomic<std::uint64_t> dropped{0};
  std::vector<std::thread> publishers;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&, p] {
      for (int n = 0; n < per_publisher; ++n) {
        dropped += topic->Publish(SeqType(), Seq{p, n}).dropped;
      }
      done.fetch_add(1);
    });
  }
  // While the consumer is stuck, every publisher finishes.
  const bool finished = WaitUntil([&] { return done.load() == kPublishers; });
  gate.Open();
  for (std::thread& t : publishers) t.join();
  ASSERT_TRUE(finished) << "a publisher blocked on a full drop-oldest queue";
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  std::size_t kept = 0;
  std::vector<int> last(kPublishers, -1);
  for (const Ref<Message>& m : rec.Messages()) {
    if (const Seq* s = SeqType().Get(*m)) {
      ++kept;
      EXPECT_GT(s->n, last[static_cast<std::size_t>(s->source)]);
      last[static_cast<std::size_t>(s->source)] = s->n;
    }
  }
  EXPECT_LE(kept, kCapacity);
  EXPECT_EQ(kept + dropped.load(), static_cast<std::size_t>(kPublishers * per_publisher));
  EXPECT_EQ(sub.Stats().dropped, dropped.load());
  // The newest message of the last publisher to finish is among those kept.
  bool some_last_kept = false;
  for (int p = 0; p < kPublishers; ++p) {
    some_last_kept = some_last_kept || last[static_cast<std::size_t>(p)] == per_publisher - 1;
  }
  EXPECT_TRUE(some_last_kept);
  EXPECT_EQ(rec.FinalCount(), 1);
}

// An unbounded queue's push takes no mailbox lock: publishers raise the congestion alert under
// it (reaching high water) while the turn clears it (falling to low water). Whatever the
// interleaving, the queue's reports alternate, raise first, and end cleared; every message
// arrives once, in each publisher's order.
TEST_P(BusStress, CongestionAlertsRaisedByLockFreePushesAlternateWithTheTurnsClears) {
  if (mode() == DeliveryMode::kSynchronous) GTEST_SKIP() << "no queue";
  constexpr int kPublishers = 3;
  const int per_publisher = BusScaled(4000);
  struct Reports {
    std::mutex mu;
    std::vector<bool> raised;  // this queue's changes, in the order reported
  };
  auto reports = std::make_shared<Reports>();
  // The only queue of a topic of this name.
  auto previous = SetTaskProcessorAlertHandler([reports](const TaskProcessorAlert& a) {
    if (a.subsystem != "bus" || !a.processor.starts_with("bus/stress-alerts-")) return;
    std::lock_guard lock(reports->mu);
    reports->raised.push_back(a.raised);
  });
  ScopeExit restore([&] { SetTaskProcessorAlertHandler(std::move(previous)); });
  Ref<Topic> topic = Topic::Create("stress-alerts");
  Recorder rec = Recorder::IgnoringChanges();
  SubscriptionOptions opts = options();
  opts.high_water = 8;
  opts.low_water = 2;
  Subscription sub = Subscription::Create(
      topic,
      [rec](const Message& m, bool is_final) {
        // A little work per message, so the queue builds up behind the publishers.
        for (int i = 0; i < 200; ++i) core_internal::CpuRelax();
        rec.Receive(m, is_final);
      },
      opts);
  ASSERT_TRUE(WaitUntil([&] { return sub.Stats().dispatched >= 1; }));
  RunThreads(kPublishers, [&](int p) {
    for (int n = 0; n < per_publisher; ++n) topic->Publish(SeqType(), Seq{p, n});
  });
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  // The turn reports the last clear after the final message's batch: wait for it.
  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard lock(reports->mu);
    return reports->raised.size() % 2 == 0;
  }));
  std::vector<bool> raised;
  {
    std::lock_guard lock(reports->mu);
    raised = reports->raised;
  }
  for (std::size_t i = 0; i < raised.size(); ++i) {
    EXPECT_EQ(raised[i], i % 2 == 0) << "report " << i;
  }
  EXPECT_FALSE(sub.Stats().alerted);
  std::size_t got = 0;
  std::vector<int> last(kPublishers, -1);
  for (const Ref<Message>& m : rec.Messages()) {
    if (const Seq* s = SeqType().Get(*m)) {
      ++got;
      EXPECT_EQ(s->n, last[static_cast<std::size_t>(s->source)] + 1);
      last[static_cast<std::size_t>(s->source)] = s->n;
    }
  }
  EXPECT_EQ(got, static_cast<std::size_t>(kPublishers * per_publisher));
  EXPECT_EQ(rec.FinalCount(), 1);
}

TEST_P(BusStress, SubscribeUnsubscribeChurnWhilePublishing) {
  const int rounds = BusScaled(200);
  Ref<Topic> topic = Topic::Create("stress-churn");
  Recorder watcher = Recorder::IgnoringChanges();
  Subscription watching = Subscription::Create(topic, watcher.Handler(), options());
  std::atomic<std::uint64_t> published{0};
  {
    Publishers publishers(2, [&](int p, int k) {
      topic->Publish(SeqType(), Seq{p, k});
      published.fetch_add(1);
    });
    RunThreads(2, [&](int) {
      for (int i = 0; i < rounds; ++i) {
        Recorder r;
        Subscription s = Subscription::Create(topic, r.Handler(), options());
        if (i % 3 == 0) {
          plexus_test::Drop(s);  // dropped without join
        } else {
          EXPECT_TRUE(s.UnsubscribeAndJoin());
          EXPECT_EQ(r.FinalCount(), 1);
          EXPECT_EQ(r.AfterFinalCount(), 0);
        }
        ASSERT_TRUE(r.WaitForFinal());
      }
    });
  }
  ASSERT_TRUE(watching.UnsubscribeAndJoin());
  std::size_t seqs = 0;
  for (const Ref<Message>& m : watcher.Messages()) seqs += SeqType().Get(*m) != nullptr ? 1 : 0;
  EXPECT_EQ(seqs, published.load());
  EXPECT_EQ(watcher.OverlapCount(), 0);
}

}  // namespace
}  // namespace plexus
