// Bus statistics: the counters of a topic and of its subscriptions (published, deliveries,
// forwarded, dispatched, queued, filtered, depth and highest depth), the same numbers in the
// listings of live topics and subscriptions, and the BusStatsText rendering (BUS17); the
// listings of live routers (routes and their counts) and caches (entries per type and node,
// aggregates, updates published) and caching topics. Counter cases run in each delivery mode.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"

namespace plexus {
namespace {

using plexus_test::Gate;
using plexus_test::InMode;
using plexus_test::IntType;
using plexus_test::ListedTopic;
using plexus_test::Recorder;
using plexus_test::StringType;
using plexus_test::WaitUntil;
using ::testing::HasSubstr;

class BusStatsModes : public plexus_test::ModeTest {};

INSTANTIATE_TEST_SUITE_P(AllModes, BusStatsModes, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// BUS17 Statistics
// -----------------------------------------------------------------------------------------

TEST_P(BusStatsModes, BUS17_TopicAndSubscriptionCounters) {
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

TEST_P(BusStatsModes, BUS17_QueueDepthAndHighestDepth) {
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

// A topic's published count includes the subscription change notices, one per Subscribe and one
// per Unsubscribe, whether anything listens or not (as Asterisk's does); a topic it forwards into
// counts them as forwarded in.
TEST(BusAcceptance, BUS17_PublishedCountsSubscriptionNotices) {
  Ref<Topic> topic = Topic::Create("bus17-notices");
  Ref<Topic> parent = Topic::Create("bus17-notices-parent");
  Forward f = ForwardAll(topic, parent);
  EXPECT_EQ(topic->Stats().published, 0u);
  Subscription a = Subscription::Create(topic, [](const Message&, bool) {});
  EXPECT_EQ(topic->Stats().published, 1u);  // a's Subscribe notice (nobody listens)
  SubscriptionOptions listening;
  listening.subscription_changes = true;
  Subscription b = Subscription::Create(
      topic, [](const Message&, bool) {}, listening);
  EXPECT_EQ(topic->Stats().published, 2u);
  topic->Publish(IntType(), 1);
  EXPECT_EQ(topic->Stats().published, 3u);
  ASSERT_TRUE(a.UnsubscribeAndJoin());  // heard by b
  EXPECT_EQ(topic->Stats().published, 4u);
  ASSERT_TRUE(b.UnsubscribeAndJoin());
  const TopicStats st = topic->Stats();
  EXPECT_EQ(st.published, 5u);
  EXPECT_EQ(st.forwarded_in, 0u);
  EXPECT_EQ(parent->Stats().published, 0u);
  EXPECT_EQ(parent->Stats().forwarded_in, 5u);
  const std::optional<TopicStats> listed = ListedTopic(topic->Id());
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ(listed->published, 5u);
}

// -----------------------------------------------------------------------------------------
// Listings
// -----------------------------------------------------------------------------------------

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

// -----------------------------------------------------------------------------------------
// Routers and caches in the listings
// -----------------------------------------------------------------------------------------

// A snapshot: an object's id and a value.
struct Item {
  std::string id;
  int value = 0;
};
const TypedMessageType<Item>& SnapshotType() {
  static const auto type = TypedMessageType<Item>::Create("StatsTest.Snapshot");
  return type;
}
const TypedMessageType<Item>& OtherSnapshotType() {
  static const auto type = TypedMessageType<Item>::Create("StatsTest.OtherSnapshot");
  return type;
}
const TypedMessageType<std::string>& PlainType() {
  static const auto type = TypedMessageType<std::string>::Create("StatsTest.Plain");
  return type;
}
std::string ItemId(const Message& m) {
  if (const Item* item = SnapshotType().Get(m)) return item->id;
  if (const Item* item = OtherSnapshotType().Get(m)) return item->id;
  return "";
}
NodeId Foreign(std::uint8_t n) {
  return NodeId(NodeId::Bytes{0x02, 0, 0, 0, 0, n});
}
// The sum of the entry's values, as a new aggregate (NodeId::None()) each time.
Ref<Message> SumAggregate(const CacheEntry& entry, const Ref<Message>&) {
  int sum = 0;
  for (const Ref<Message>& m : entry.All()) {
    const Item* item = SnapshotType().Get(*m);
    if (item == nullptr) item = OtherSnapshotType().Get(*m);
    sum += item->value;
  }
  return Message::Create(&entry.Type(), Item{entry.Id(), sum}, NodeId::None());
}

std::optional<MessageRouterStats> ListedRouter(const std::string& id) {
  for (MessageRouterStats& r : ListRouters()) {
    if (r.subscription.id == id) return std::move(r);
  }
  return std::nullopt;
}
const RouteStats* FindRoute(const MessageRouterStats& stats, RouteKind kind,
                            const std::string& name) {
  for (const RouteStats& r : stats.routes) {
    if (r.kind == kind && r.name == name) return &r;
  }
  return nullptr;
}
std::optional<CacheListing> ListedCacheFedBy(const std::string& output) {
  for (CacheListing& c : ListCaches()) {
    if (std::find(c.caching_topics.begin(), c.caching_topics.end(), output) !=
        c.caching_topics.end()) {
      return std::move(c);
    }
  }
  return std::nullopt;
}
// The line of `text` that starts with `prefix` after its indentation ("" if none), searched
// from the section whose header starts with `section` on.
std::string LineStartingWith(const std::string& text, const std::string& prefix,
                             const std::string& section) {
  std::size_t pos = text.find("\n" + section + " ");
  if (pos == std::string::npos) return "";
  while (pos < text.size()) {
    const std::size_t end = std::min(text.find('\n', pos), text.size());
    const std::string line = text.substr(pos, end - pos);
    const std::size_t first = line.find_first_not_of(' ');
    if (first != std::string::npos && line.compare(first, prefix.size(), prefix) == 0) return line;
    pos = end + 1;
  }
  return "";
}

TEST_P(BusStatsModes, RoutersAreListedWithTheirRoutesAndCounts) {
  auto original = Topic::Create("stats-router-original");
  Ref<Cache> cache = Cache::Create(&ItemId);
  Ref<CachingTopic> caching = CachingTopic::Create(original, cache);
  MessageRouter router = MessageRouter::Create(caching->Output(), InMode(mode()));
  EXPECT_GE(LiveRouterCount(), 1u);
  ASSERT_TRUE(router.AddRoute(PlainType().get(), [](const Message&) {}));
  ASSERT_TRUE(router.AddCacheRoute(SnapshotType().get(), [](const Message&) {}));
  ASSERT_TRUE(router.SetDefaultRoute([](const Message&) {}));
  for (int i = 0; i < 3; ++i) original->Publish(SnapshotType().Make(Item{"a", i}));
  original->Publish(OtherSnapshotType().Make(Item{"b", 1}));  // no cache route: default
  router.PublishAndWait(PlainType().Make("plain"));

  const std::optional<MessageRouterStats> r = ListedRouter(router.Id());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->subscription.topic, caching->Output()->Name());
  EXPECT_EQ(r->subscription.mode, mode());
  EXPECT_EQ(r->cache_routed, 3u);
  EXPECT_EQ(r->routed, 4u);
  EXPECT_GE(r->defaulted, 1u);  // the other snapshot's update (and perhaps the notice)
  ASSERT_EQ(r->routes.size(), 3u);
  const RouteStats* cache_route = FindRoute(*r, RouteKind::kCache, "StatsTest.Snapshot");
  ASSERT_NE(cache_route, nullptr);
  EXPECT_EQ(cache_route->calls, 3u);
  ASSERT_NE(FindRoute(*r, RouteKind::kType, "StatsTest.Plain"), nullptr);
  EXPECT_EQ(FindRoute(*r, RouteKind::kType, "StatsTest.Plain")->calls, 1u);
  ASSERT_NE(FindRoute(*r, RouteKind::kDefault, "default"), nullptr);
  EXPECT_EQ(FindRoute(*r, RouteKind::kDefault, "default")->calls, r->defaulted);

  // The text: the router's row (id, topic, routed, cache-routed) and a row per route.
  const std::string text = BusStatsText();
  const std::string row = LineStartingWith(text, router.Id() + " ", "router");
  ASSERT_FALSE(row.empty()) << text;
  EXPECT_THAT(row, HasSubstr(caching->Output()->Name()));
  EXPECT_THAT(row, ::testing::MatchesRegex(".* +4 +3 +[0-9]+ +[0-9]+ +0"));
  EXPECT_THAT(LineStartingWith(text, "route cache    StatsTest.Snapshot", "router"),
              ::testing::MatchesRegex(".* 3 calls +0 failed"))
      << text;
  EXPECT_THAT(LineStartingWith(text, "route type     StatsTest.Plain", "router"),
              ::testing::MatchesRegex(".* 1 calls +0 failed"))
      << text;

  // A removed route leaves the listing; a router that is gone leaves it entirely.
  ASSERT_TRUE(router.RemoveCacheRoute(SnapshotType().get()));
  EXPECT_EQ(FindRoute(*ListedRouter(router.Id()), RouteKind::kCache, "StatsTest.Snapshot"),
            nullptr);
  const std::string id = router.Id();
  ASSERT_TRUE(router.UnsubscribeAndJoin());
  router = MessageRouter();
  EXPECT_TRUE(WaitUntil([&] { return !ListedRouter(id).has_value(); }));
  // (Its subscription may still be listed a moment longer: it lets the router go first.)
  EXPECT_EQ(LineStartingWith(BusStatsText(), id + " ", "router"), "");
}

TEST(BusUnit, CachesAreListedWithEntriesPerTypeAndNodeAggregatesAndUpdates) {
  auto original = Topic::Create("stats-cache-original");
  const std::size_t caches_before = LiveCacheCount();
  Ref<Cache> cache = Cache::Create(&ItemId, &SumAggregate, nullptr);
  Ref<CachingTopic> caching = CachingTopic::Create(original, cache);
  // A subscriber on the output, so that the caching topic publishes its updates.
  Subscription sub = Subscription::Create(
      caching->Output(), [](const Message&, bool) {}, InMode(DeliveryMode::kSynchronous));
  EXPECT_GE(LiveCacheCount(), 1u);

  original->Publish(SnapshotType().Make(Item{"x", 1}));  // local
  original->Publish(Message::Create(SnapshotType().get(), Item{"x", 2}, Foreign(1)));
  original->Publish(Message::Create(SnapshotType().get(), Item{"y", 5}, Foreign(1)));
  original->Publish(OtherSnapshotType().Make(Item{"z", 1}));  // local
  original->Publish(PlainType().Make("not cacheable"));

  const std::optional<CacheListing> c = ListedCacheFedBy(caching->Output()->Name());
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->stats.entries, 3u);
  EXPECT_EQ(c->stats.puts, 4u);
  ASSERT_EQ(c->types.size(), 2u);  // by name
  EXPECT_EQ(c->types[0].type, "StatsTest.OtherSnapshot");
  EXPECT_EQ(c->types[0].entries, 1u);
  EXPECT_EQ(c->types[0].local, 1u);
  EXPECT_EQ(c->types[1].type, "StatsTest.Snapshot");
  EXPECT_EQ(c->types[1].entries, 2u);
  EXPECT_EQ(c->types[1].local, 1u);
  EXPECT_EQ(c->types[1].foreign, 2u);
  // An aggregate for every entry the aggregate function saw: x and y (sums), z (its own).
  EXPECT_EQ(c->aggregates, 3u);
  EXPECT_EQ(c->types[1].aggregates, 2u);
  ASSERT_EQ(c->nodes.size(), 2u);
  EXPECT_TRUE(c->nodes[0].local);
  EXPECT_EQ(c->nodes[0].snapshots, 2u);
  EXPECT_EQ(c->nodes[1].node, Foreign(1));
  EXPECT_EQ(c->nodes[1].snapshots, 2u);
  // Four snapshot updates and four aggregate updates (x's twice).
  EXPECT_EQ(c->updates_published, caching->Stats().updates_published);
  EXPECT_EQ(c->updates_published, 8u);

  bool listed = false;
  for (const CachingTopicListing& ct : ListCachingTopics()) {
    if (ct.output != caching->Output()->Name()) continue;
    listed = true;
    EXPECT_EQ(ct.original, "stats-cache-original");
    EXPECT_EQ(ct.cache_id, c->id);
    EXPECT_TRUE(ct.subscribed);
    EXPECT_EQ(ct.stats.cached, 4u);
    EXPECT_GE(ct.stats.not_cacheable, 1u);  // the plain message (and notices)
    EXPECT_EQ(ct.stats.updates_published, 8u);
  }
  EXPECT_TRUE(listed);

  // The text: the cache's row, a row per type and per node, the caching topic's row.
  const std::string text = BusStatsText();
  const std::string name = "cache-" + std::to_string(c->id);
  const std::string row = LineStartingWith(text, name + " ", "cache");
  ASSERT_FALSE(row.empty()) << text;
  EXPECT_THAT(
      row, ::testing::MatchesRegex(name + " +3 +4 +0 +3 +8 +0 +0 +" + caching->Output()->Name()));
  EXPECT_THAT(LineStartingWith(text, "type StatsTest.Snapshot ", "cache"),
              ::testing::MatchesRegex(" *type StatsTest.Snapshot +2 entries +1 local +2 foreign "
                                      "+2 aggregates"))
      << text;
  EXPECT_THAT(LineStartingWith(text, "node " + Foreign(1).ToString(), "cache"),
              ::testing::MatchesRegex(".* 2 snapshots"))
      << text;
  EXPECT_THAT(LineStartingWith(text, "node " + NodeId::Local().ToString(), "cache"),
              ::testing::MatchesRegex(".*local +2 snapshots"))
      << text;
  const std::string ct_row =
      LineStartingWith(text, caching->Output()->Name() + " ", "caching topic");
  EXPECT_THAT(ct_row,
              ::testing::MatchesRegex(".*stats-cache-original +" + name + " +4 +0 +[0-9]+ +0 +8"))
      << text;

  // Gone from the listings once dropped.
  const std::string output = caching->Output()->Name();
  sub.UnsubscribeAndJoin();
  ASSERT_TRUE(caching->UnsubscribeAndJoin());
  caching = nullptr;
  cache = nullptr;
  EXPECT_FALSE(ListedCacheFedBy(output).has_value());
  // The caching core lets the cache go once its final message was handled.
  EXPECT_TRUE(WaitUntil([&] { return LiveCacheCount() <= caches_before; }));
  EXPECT_THAT(BusStatsText(), ::testing::Not(HasSubstr(name + " ")));
}

// Listing the caches holds none of their entries: the writes after a listing are still made in
// place (none is counted as a copy for a holder).
TEST(BusUnit, ListingCachesLeavesWritesInPlace) {
  auto original = Topic::Create("stats-cache-in-place");
  Ref<Cache> cache = Cache::Create(&ItemId);
  Ref<CachingTopic> caching = CachingTopic::Create(original, cache);
  for (int i = 0; i < 3; ++i) original->Publish(SnapshotType().Make(Item{"a", i}));
  const std::optional<CacheListing> listed = ListedCacheFedBy(caching->Output()->Name());
  ASSERT_TRUE(listed.has_value());
  ASSERT_EQ(listed->types.size(), 1u);
  EXPECT_EQ(listed->types[0].local, 1u);
  EXPECT_FALSE(BusStatsText().empty());
  for (int i = 3; i < 6; ++i) original->Publish(SnapshotType().Make(Item{"a", i}));
  EXPECT_EQ(cache->Stats().puts, 6u);
  EXPECT_EQ(cache->Stats().held_entry_copies, 0u);
  // Whereas a reader that holds the entry whole makes the next write copy it.
  EXPECT_NE(cache->GetEntry(SnapshotType().get(), "a"), nullptr);
  original->Publish(SnapshotType().Make(Item{"a", 6}));
  EXPECT_EQ(cache->Stats().held_entry_copies, 1u);
}

}  // namespace
}  // namespace plexus
