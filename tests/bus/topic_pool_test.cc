// TopicPool: Get makes one topic per name (also under concurrent gets), named after the pool's
// "all" topic and forwarding into it; Delete takes the short or the full name and detaches the
// topic, so the next Get makes a fresh one; a pool dropped before its topics leaves them working
// (BUS16, and BUS13 for the pool's lifetime).

#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"

namespace plexus {
namespace {

using plexus_test::Recorder;
using plexus_test::Strings;
using plexus_test::StringType;
using ::testing::ElementsAre;

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

// -----------------------------------------------------------------------------------------
// BUS13 Lifetimes in any order
// -----------------------------------------------------------------------------------------

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

}  // namespace
}  // namespace plexus
