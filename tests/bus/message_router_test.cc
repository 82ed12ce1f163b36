// The message router (plexus/bus/message_router.h): the acceptance cases CA11, CA12, CA13 and
// CA14 (named after them), cache routes, then misuse, lifecycle edge cases and stress tests
// racing route changes (type and cache routes) against dispatch. Every wait is on a condition
// (a PublishAndWait barrier, a join or a counter), never a sleep.

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/config.h"
#include "plexus/core/misuse.h"

namespace plexus {
namespace {

using plexus_test::Counter;
using plexus_test::InMode;
using plexus_test::LogCapture;
using plexus_test::Recorder;
using plexus_test::ScopedMisuseAction;
using plexus_test::StringOf;
using plexus_test::WaitUntil;

// Three string types of the router's own (so no other suite's subscription sees them).
const TypedMessageType<std::string>& Type1() {
  static const auto type = TypedMessageType<std::string>::Create("RouterTest.Type1");
  return type;
}
const TypedMessageType<std::string>& Type2() {
  static const auto type = TypedMessageType<std::string>::Create("RouterTest.Type2");
  return type;
}
const TypedMessageType<std::string>& Type3() {
  static const auto type = TypedMessageType<std::string>::Create("RouterTest.Type3");
  return type;
}
// A type with a JSON formatter and one with a text formatter.
const TypedMessageType<std::string>& JsonType() {
  static const auto type = TypedMessageType<std::string>::Create(
      "RouterTest.Json",
      MessageFormatters{.to_json = [](const Message& m) -> std::optional<std::string> {
        return "\"" + StringOf(m) + "\"";
      }});
  return type;
}
const TypedMessageType<std::string>& TextType() {
  static const auto type = TypedMessageType<std::string>::Create(
      "RouterTest.Text",
      MessageFormatters{.to_text = [](const Message& m) -> std::optional<std::string> {
        return "Value: " + StringOf(m);
      }});
  return type;
}

// Snapshot types for the cache routes: the cache below caches the types whose name starts with
// "Cache", all under one id.
const TypedMessageType<std::string>& Cache1() {
  static const auto type = TypedMessageType<std::string>::Create("Cache1");
  return type;
}
const TypedMessageType<std::string>& Cache2() {
  static const auto type = TypedMessageType<std::string>::Create("Cache2");
  return type;
}
const TypedMessageType<std::string>& NonCache() {
  static const auto type = TypedMessageType<std::string>::Create("NonCache");
  return type;
}
Ref<Cache> ConstantIdCache() {
  return Cache::Create([](const Message& m) -> std::string {
    return m.Type().Name().starts_with("Cache") ? "constant" : "";
  });
}

// A caching topic over a fresh original topic, and its output, for a router to sit on.
struct CachedTopic {
  explicit CachedTopic(const std::string& name)
      : original(Topic::Create(name)),
        cache(ConstantIdCache()),
        caching(CachingTopic::Create(original, cache)) {}
  const Ref<Topic>& Output() const { return caching->Output(); }
  Ref<Topic> original;
  Ref<Cache> cache;
  Ref<CachingTopic> caching;
};

// What a typed cache route received: the update and the snapshots' payloads.
class UpdateLog {
 public:
  struct Entry {
    CacheUpdate update;
    const std::string* old_value;
    const std::string* new_value;
  };
  void Add(const CacheUpdate& update, const std::string* old_value, const std::string* new_value) {
    std::lock_guard lock(mu_);
    entries_.push_back(Entry{update, old_value, new_value});
  }
  std::vector<Entry> Entries() const {
    std::lock_guard lock(mu_);
    return entries_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
};

// The update a recorded cache-update message carries.
const CacheUpdate& UpdateOf(const Ref<Message>& m) {
  const CacheUpdate* update = CacheUpdateType().Get(*m);
  EXPECT_NE(update, nullptr);
  static const CacheUpdate kNone;
  return update != nullptr ? *update : kNone;
}

std::vector<std::string> Strings(const Recorder& recorder) {
  std::vector<std::string> out;
  for (const Ref<Message>& m : recorder.Messages()) out.push_back(StringOf(*m));
  return out;
}

const RouteStats* FindRoute(const MessageRouterStats& stats, const std::string& name,
                            RouteKind kind) {
  for (const RouteStats& r : stats.routes) {
    if (r.name == name && r.kind == kind) return &r;
  }
  return nullptr;
}
const RouteStats* FindRoute(const MessageRouterStats& stats, const std::string& name) {
  for (const RouteStats& r : stats.routes) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

class MessageRouterModes : public ::testing::TestWithParam<DeliveryMode> {
 protected:
  SubscriptionOptions options() const { return InMode(GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(AllModes, MessageRouterModes, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// -----------------------------------------------------------------------------------------
// CA11 Routes / CA12 in each delivery mode
// -----------------------------------------------------------------------------------------

// CA11 on the shared pool is the CA12 "Pool" instance; the case is written once, run per mode.
TEST_P(MessageRouterModes, CA11_CA12_EachConsumerGetsItsMessageFinalToDefaultOnly) {
  auto topic = Topic::Create("router-ca11");
  const Recorder consumer1 = Recorder::IgnoringChanges();
  const Recorder consumer2 = Recorder::IgnoringChanges();
  const Recorder consumer3 = Recorder::IgnoringChanges();
  MessageRouter router = MessageRouter::Create(topic, options());
  ASSERT_TRUE(router);
  // Typed, untyped (message and final flag) and default routes.
  ASSERT_TRUE(router.AddRoute(
      Type1(), [consumer1](const std::string&, const Message& m) { consumer1.Receive(m, false); }));
  ASSERT_TRUE(router.AddRoute(Type2().get(), consumer2.Handler()));
  ASSERT_TRUE(router.SetDefaultRoute(consumer3.Handler()));

  auto m1 = Type1().Make("one");
  auto m2 = Type2().Make("two");
  auto m3 = Type3().Make("three");
  topic->Publish(m1);
  topic->Publish(m2);
  // In order: once the router handled m3 it handled m1 and m2.
  router.PublishAndWait(m3);

  ASSERT_EQ(consumer1.Count(), 1u);
  ASSERT_EQ(consumer2.Count(), 1u);
  ASSERT_EQ(consumer3.Count(), 1u);
  EXPECT_EQ(consumer1.Messages()[0].get(), m1.get());
  EXPECT_EQ(consumer2.Messages()[0].get(), m2.get());
  EXPECT_EQ(consumer3.Messages()[0].get(), m3.get());

  EXPECT_TRUE(router.UnsubscribeAndJoin());
  EXPECT_TRUE(router.IsDone());
  EXPECT_EQ(consumer3.FinalCount(), 1);
  EXPECT_EQ(consumer1.FinalCount(), 0);
  EXPECT_EQ(consumer2.FinalCount(), 0);
  EXPECT_EQ(consumer1.CallbackCount(), 1u);
  EXPECT_EQ(consumer2.CallbackCount(), 1u);
  // m3 and the final message, and the router's subscribe notice unless that was dispatched
  // before the default route was set.
  EXPECT_GE(consumer3.CallbackCount(), 2u);
  EXPECT_LE(consumer3.CallbackCount(), 3u);
  EXPECT_EQ(consumer3.OverlapCount(), 0);

  const MessageRouterStats stats = router.Stats();
  EXPECT_EQ(stats.routed, 2u);
  EXPECT_EQ(stats.defaulted, consumer3.CallbackCount());
  EXPECT_EQ(stats.defaulted + stats.unrouted, 3u);
  EXPECT_TRUE(stats.subscription.done);
  ASSERT_NE(FindRoute(stats, "RouterTest.Type1"), nullptr);
  EXPECT_EQ(FindRoute(stats, "RouterTest.Type1")->calls, 1u);
  ASSERT_NE(FindRoute(stats, "default"), nullptr);
  EXPECT_EQ(FindRoute(stats, "default")->calls, stats.defaulted);
}

// -----------------------------------------------------------------------------------------
// CA13 Cache-update routes
// -----------------------------------------------------------------------------------------

TEST_P(MessageRouterModes, CA13_CacheUpdateRoutes) {
  CachedTopic cached("router-ca13");
  MessageRouter router = MessageRouter::Create(cached.Output(), options());
  ASSERT_TRUE(router);
  UpdateLog consumer1;
  const Recorder consumer2 = Recorder::IgnoringChanges();
  const Recorder consumer3 = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddCacheRoute(
      Cache1(),
      [&consumer1](const CacheUpdate& update, const std::string* old_value,
                   const std::string* new_value) { consumer1.Add(update, old_value, new_value); }));
  ASSERT_TRUE(router.AddRoute(CacheUpdateType().get(), consumer2.Handler()));
  ASSERT_TRUE(router.SetDefaultRoute(consumer3.Handler()));

  auto c1 = Cache1().Make("one");
  auto c2 = Cache2().Make("two");
  auto n = NonCache().Make("three");
  cached.original->Publish(c1);
  cached.original->Publish(c2);
  cached.original->Publish(n);
  // The barrier: once the router handled its final message, it handled every update before.
  ASSERT_TRUE(router.UnsubscribeAndJoin());

  const std::vector<UpdateLog::Entry> got1 = consumer1.Entries();
  ASSERT_EQ(got1.size(), 1u);
  EXPECT_EQ(got1[0].update.type, Cache1().get());
  EXPECT_EQ(got1[0].update.new_snapshot.get(), c1.get());
  EXPECT_EQ(got1[0].update.old_snapshot, nullptr);
  // The typed payloads, without a cast in the route.
  ASSERT_NE(got1[0].new_value, nullptr);
  EXPECT_EQ(*got1[0].new_value, "one");
  EXPECT_EQ(got1[0].old_value, nullptr);

  ASSERT_EQ(consumer2.Count(), 1u);
  EXPECT_EQ(UpdateOf(consumer2.Messages()[0]).type, Cache2().get());
  EXPECT_EQ(UpdateOf(consumer2.Messages()[0]).new_snapshot.get(), c2.get());
  EXPECT_EQ(consumer2.FinalCount(), 0);

  // Nothing but the router's own notices (its final message, perhaps its subscribe notice).
  EXPECT_EQ(consumer3.Count(), 0u);
  EXPECT_EQ(consumer3.FinalCount(), 1);

  const MessageRouterStats stats = router.Stats();
  EXPECT_EQ(stats.cache_routed, 1u);
  EXPECT_EQ(stats.routed, 2u);
  const RouteStats* cache_route = FindRoute(stats, "Cache1", RouteKind::kCache);
  ASSERT_NE(cache_route, nullptr);
  EXPECT_EQ(cache_route->calls, 1u);
  EXPECT_EQ(FindRoute(stats, "CacheUpdate", RouteKind::kType)->calls, 1u);
}

// Precedence, as Asterisk's: the cache route of the update's snapshot type, else a route for
// the cache-update type, else the default. A route for the snapshot type itself takes the
// snapshots, never their updates: the two do not clash.
TEST_P(MessageRouterModes, CacheRoutePrecedenceOverUpdateTypeRouteOverDefault) {
  CachedTopic cached("router-cache-precedence");
  MessageRouter router = MessageRouter::Create(cached.Output(), options());
  const Recorder by_snapshot = Recorder::IgnoringChanges();
  const Recorder by_update_type = Recorder::IgnoringChanges();
  const Recorder by_default = Recorder::IgnoringChanges();
  const Recorder snapshots = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddCacheRoute(Cache1().get(), by_snapshot.Handler()));
  ASSERT_TRUE(router.AddRoute(Cache1().get(), snapshots.Handler()));
  ASSERT_TRUE(router.AddRoute(CacheUpdateType().get(), by_update_type.Handler()));
  ASSERT_TRUE(router.SetDefaultRoute(by_default.Handler()));
  EXPECT_TRUE(router.HasCacheRoute(Cache1().get()));
  EXPECT_FALSE(router.HasCacheRoute(Cache2().get()));
  EXPECT_TRUE(router.HasRoute(Cache1().get()));

  // A snapshot published on the output itself is routed by its own type.
  auto raw = Cache1().Make("raw");
  router.PublishAndWait(raw);
  EXPECT_EQ(snapshots.Count(), 1u);

  // Each step publishes one Cache1 snapshot on the original (an update on the output), then
  // waits for the router with a barrier that only the snapshot-type route takes.
  auto step = [&](const std::string& value) {
    cached.original->Publish(Cache1().Make(value));
    router.PublishAndWait(Cache1().Make("barrier"));
  };
  step("a");
  ASSERT_TRUE(router.RemoveCacheRoute(Cache1().get()));
  EXPECT_FALSE(router.HasCacheRoute(Cache1().get()));
  EXPECT_FALSE(router.RemoveCacheRoute(Cache1().get()));  // nothing left to remove
  step("b");
  ASSERT_TRUE(router.RemoveRoute(CacheUpdateType().get()));
  step("c");

  ASSERT_EQ(by_snapshot.Count(), 1u);
  EXPECT_EQ(StringOf(*UpdateOf(by_snapshot.Messages()[0]).new_snapshot), "a");
  ASSERT_EQ(by_update_type.Count(), 1u);
  EXPECT_EQ(StringOf(*UpdateOf(by_update_type.Messages()[0]).new_snapshot), "b");
  EXPECT_EQ(StringOf(*UpdateOf(by_update_type.Messages()[0]).old_snapshot), "a");
  ASSERT_EQ(by_default.Count(), 1u);
  EXPECT_EQ(StringOf(*UpdateOf(by_default.Messages()[0]).new_snapshot), "c");
  EXPECT_EQ(snapshots.Count(), 4u);  // "raw" and the three barriers
  router.UnsubscribeAndJoin();
  // The final message never goes to a cache route.
  EXPECT_EQ(by_snapshot.FinalCount(), 0);
}

// A clear reaches the cache route with the old snapshot and no new one; the untyped forms get
// the update (with its message) or the message alone.
TEST_P(MessageRouterModes, CacheRouteUntypedFormsAndClears) {
  CachedTopic cached("router-cache-untyped");
  MessageRouter router = MessageRouter::Create(cached.Output(), options());
  std::mutex mu;
  std::vector<std::pair<Ref<Message>, Ref<Message>>> seen;  // (old, new) of Cache1 updates
  const Recorder cache2 = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddCacheRoute(Cache1().get(), [&](const CacheUpdate& u, const Message& m) {
    EXPECT_EQ(CacheUpdateType().Get(m), &u);
    std::lock_guard lock(mu);
    seen.emplace_back(u.old_snapshot, u.new_snapshot);
  }));
  ASSERT_TRUE(router.AddCacheRoute(Cache2().get(), cache2.Handler()));
  UpdateLog typed_clear;
  auto c1 = Cache1().Make("one");
  cached.original->Publish(c1);
  cached.original->Publish(MakeCacheClear(c1));
  cached.original->Publish(Cache2().Make("two"));
  ASSERT_TRUE(router.UnsubscribeAndJoin());
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, nullptr);
  EXPECT_EQ(seen[0].second.get(), c1.get());
  EXPECT_EQ(seen[1].first.get(), c1.get());
  EXPECT_EQ(seen[1].second, nullptr);
  ASSERT_EQ(cache2.Count(), 1u);
  EXPECT_EQ(StringOf(*UpdateOf(cache2.Messages()[0]).new_snapshot), "two");
}

// The typed form on a clear: the old payload, and a null new one.
TEST(MessageRouter, TypedCacheRouteSeesAClearAsOldWithoutNew) {
  CachedTopic cached("router-cache-typed-clear");
  MessageRouter router = MessageRouter::Create(cached.Output(), InMode(DeliveryMode::kSynchronous));
  UpdateLog log;
  ASSERT_TRUE(router.AddCacheRoute(
      Cache1(), [&log](const CacheUpdate& u, const std::string* old_value,
                       const std::string* new_value) { log.Add(u, old_value, new_value); }));
  auto c1 = Cache1().Make("one");
  cached.original->Publish(c1);
  cached.original->Publish(MakeCacheClear(c1));
  const std::vector<UpdateLog::Entry> entries = log.Entries();
  ASSERT_EQ(entries.size(), 2u);
  ASSERT_NE(entries[1].old_value, nullptr);
  EXPECT_EQ(*entries[1].old_value, "one");
  EXPECT_EQ(entries[1].new_value, nullptr);
  router.UnsubscribeAndJoin();
}

TEST_P(MessageRouterModes, CacheRouteRemovedWhileUpdatesFlowGetsNothingOnceRemoveReturns) {
  CachedTopic cached("router-cache-remove");
  MessageRouter router = MessageRouter::Create(cached.Output(), options());
  Counter routed;
  std::atomic<bool> removed{false};
  std::atomic<int> after_removal{0};
  const Recorder fallback = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddCacheRoute(Cache1(),
                                   [&](const CacheUpdate&, const std::string*, const std::string*) {
                                     if (removed.load()) after_removal.fetch_add(1);
                                     routed.Add();
                                   }));
  ASSERT_TRUE(router.SetDefaultRoute(fallback.Handler()));

  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    for (int n = 0; !stop.load(); ++n) {
      cached.original->Publish(Cache1().Make("flowing"));
      // Paced now and then, so that a pool router's queue stays short.
      if (n % 64 == 0) router.PublishAndWait(NonCache().Make("pace"));
    }
  });
  ASSERT_TRUE(routed.WaitFor(50));
  EXPECT_TRUE(router.RemoveCacheRoute(Cache1().get()));
  removed.store(true);
  cached.original->Publish(Cache1().Make("later"));
  router.PublishAndWait(NonCache().Make("barrier"));
  stop.store(true);
  publisher.join();
  EXPECT_EQ(after_removal.load(), 0);
  // The later update fell to the default route.
  bool later_defaulted = false;
  for (const Ref<Message>& m : fallback.Messages()) {
    const CacheUpdate* u = CacheUpdateType().Get(*m);
    if (u != nullptr && u->new_snapshot != nullptr && StringOf(*u->new_snapshot) == "later") {
      later_defaulted = true;
    }
  }
  EXPECT_TRUE(later_defaulted);
  router.UnsubscribeAndJoin();
  EXPECT_EQ(after_removal.load(), 0);
}

TEST_P(MessageRouterModes, CacheRouteAddedTakesLaterUpdates) {
  CachedTopic cached("router-cache-add");
  MessageRouter router = MessageRouter::Create(cached.Output(), options());
  const Recorder consumer = Recorder::IgnoringChanges();
  const Recorder barrier = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddRoute(NonCache().get(), barrier.Handler()));
  // Before the route, the router does not even accept cache updates.
  cached.original->Publish(Cache1().Make("before"));
  router.PublishAndWait(NonCache().Make("barrier"));
  ASSERT_TRUE(router.AddCacheRoute(Cache1().get(), consumer.Handler()));
  cached.original->Publish(Cache1().Make("after"));
  router.PublishAndWait(NonCache().Make("barrier"));
  ASSERT_EQ(consumer.Count(), 1u);
  EXPECT_EQ(StringOf(*UpdateOf(consumer.Messages()[0]).new_snapshot), "after");
  EXPECT_EQ(StringOf(*UpdateOf(consumer.Messages()[0]).old_snapshot), "before");
  EXPECT_GE(router.Stats().subscription.filtered, 1u);  // the "before" update
  router.UnsubscribeAndJoin();
}

TEST(MessageRouter, SecondCacheRouteForOneSnapshotTypeIsRefusedWithCallersLocation) {
  CachedTopic cached("router-cache-duplicate");
  MessageRouter router = MessageRouter::Create(cached.Output());
  const Recorder first = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddCacheRoute(Cache1().get(), first.Handler()));
  PLEXUS_EXPECT_MISUSE_HERE(router.AddCacheRoute(Cache1().get(), [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(router.AddCacheRoute(
      Cache1(), [](const CacheUpdate&, const std::string*, const std::string*) {}));
  {
    ScopedMisuseAction log(MisuseAction::kLog);
    LogCapture capture;
    EXPECT_FALSE(router.AddCacheRoute(Cache1().get(), [](const Message&) {}));
    EXPECT_NE(capture.Text().find("cache route for snapshot type 'Cache1'"), std::string::npos)
        << capture.Text();
  }
  // A type route for Cache1, or a cache route for another type, is no duplicate.
  EXPECT_TRUE(router.AddRoute(Cache1().get(), [](const Message&) {}));
  EXPECT_TRUE(router.AddCacheRoute(Cache2().get(), [](const Message&) {}));
  // The first route is still the one in force.
  auto c1 = Cache1().Make("kept");
  cached.original->Publish(c1);
  router.UnsubscribeAndJoin();
  ASSERT_EQ(first.Count(), 1u);
  EXPECT_EQ(UpdateOf(first.Messages()[0]).new_snapshot.get(), c1.get());
}

TEST_P(MessageRouterModes, ThrowingCacheRouteIsCountedAndRouterGoesOn) {
  CachedTopic cached("router-cache-throw");
  MessageRouter router = MessageRouter::Create(cached.Output(), options());
  const Recorder consumer2 = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddCacheRoute(
      Cache1(), [](const CacheUpdate&, const std::string*, const std::string* value) {
        throw std::runtime_error("cache route failed on " + (value ? *value : std::string()));
      }));
  ASSERT_TRUE(router.AddCacheRoute(Cache2().get(), consumer2.Handler()));
  LogCapture capture;
  for (int i = 0; i < 3; ++i) {
    cached.original->Publish(Cache1().Make("bad"));
    cached.original->Publish(Cache2().Make("good"));
  }
  ASSERT_TRUE(router.UnsubscribeAndJoin());
  EXPECT_EQ(consumer2.Count(), 3u);
  const MessageRouterStats stats = router.Stats();
  EXPECT_EQ(stats.failed, 3u);
  EXPECT_EQ(stats.cache_routed, 6u);
  const RouteStats* bad = FindRoute(stats, "Cache1", RouteKind::kCache);
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(bad->calls, 3u);
  EXPECT_EQ(bad->failed, 3u);
  EXPECT_EQ(FindRoute(stats, "Cache2", RouteKind::kCache)->failed, 0u);
  EXPECT_NE(capture.Text().find("cache route failed on bad"), std::string::npos) << capture.Text();
}

TEST(MessageRouter, CacheRouteMisuseIsReportedWithTheCallersLocation) {
  MessageRouter empty;
  PLEXUS_EXPECT_MISUSE_HERE(empty.AddCacheRoute(Cache1().get(), [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(empty.RemoveCacheRoute(Cache1().get()));
  EXPECT_FALSE(empty.HasCacheRoute(Cache1().get()));
  CachedTopic cached("router-cache-misuse");
  MessageRouter router = MessageRouter::Create(cached.Output());
  PLEXUS_EXPECT_MISUSE_HERE(router.AddCacheRoute(nullptr, [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(router.AddCacheRouteHandler(Cache1().get(), RouteHandler()));
  PLEXUS_EXPECT_MISUSE_HERE(router.RemoveCacheRoute(nullptr));
  EXPECT_FALSE(router.HasCacheRoute(nullptr));
  EXPECT_TRUE(router.Stats().routes.empty());
}

// A cache route removing itself from its own callback returns at once, as a type route does.
TEST_P(MessageRouterModes, CacheRouteRemovingItselfFromItsCallback) {
  CachedTopic cached("router-cache-self-remove");
  MessageRouter router = MessageRouter::Create(cached.Output(), options());
  const Recorder fallback = Recorder::IgnoringChanges();
  std::atomic<int> calls{0};
  ASSERT_TRUE(router.AddCacheRoute(Cache1().get(), [&](const Message&) {
    calls.fetch_add(1);
    EXPECT_TRUE(router.RemoveCacheRoute(Cache1().get()));
  }));
  ASSERT_TRUE(router.SetDefaultRoute(fallback.Handler()));
  cached.original->Publish(Cache1().Make("first"));
  cached.original->Publish(Cache1().Make("second"));
  ASSERT_TRUE(router.UnsubscribeAndJoin());
  EXPECT_EQ(calls.load(), 1);
  ASSERT_EQ(fallback.Count(), 1u);
  EXPECT_EQ(StringOf(*UpdateOf(fallback.Messages()[0]).new_snapshot), "second");
}

// -----------------------------------------------------------------------------------------
// CA14 Routes at run time
// -----------------------------------------------------------------------------------------

TEST_P(MessageRouterModes, CA14_RemovedRouteGetsNothingOnceRemoveReturns) {
  auto topic = Topic::Create("router-ca14-remove");
  MessageRouter router = MessageRouter::Create(topic, options());
  Counter routed;
  std::atomic<bool> removed{false};
  std::atomic<int> after_removal{0};
  const Recorder fallback = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddRoute(Type1(), [&](const std::string&, const Message&) {
    if (removed.load()) after_removal.fetch_add(1);
    routed.Add();
  }));
  ASSERT_TRUE(router.SetDefaultRoute(fallback.Handler()));

  // Messages flow from another thread while the route is removed.
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    while (!stop.load()) topic->Publish(Type1().Make("flowing"));
  });
  ASSERT_TRUE(routed.WaitFor(50));
  EXPECT_TRUE(router.RemoveRoute(Type1().get()));
  removed.store(true);
  EXPECT_FALSE(router.HasRoute(Type1().get()));
  EXPECT_FALSE(router.RemoveRoute(Type1().get()));  // a second removal: nothing to do

  auto later = Type1().Make("later");
  router.PublishAndWait(later);
  stop.store(true);
  publisher.join();
  EXPECT_EQ(after_removal.load(), 0);
  EXPECT_TRUE(fallback.Contains(later.get()));
  router.UnsubscribeAndJoin();
  EXPECT_EQ(after_removal.load(), 0);
}

TEST_P(MessageRouterModes, CA14_AddedRouteTakesLaterMessagesOfItsType) {
  auto topic = Topic::Create("router-ca14-add");
  MessageRouter router = MessageRouter::Create(topic, options());
  const Recorder fallback = Recorder::IgnoringChanges();
  const Recorder consumer2 = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.SetDefaultRoute(fallback.Handler()));
  auto before = Type2().Make("before");
  router.PublishAndWait(before);
  ASSERT_TRUE(router.AddRoute(Type2().get(), consumer2.Handler()));
  auto after = Type2().Make("after");
  router.PublishAndWait(after);
  EXPECT_EQ(Strings(fallback), std::vector<std::string>{"before"});
  EXPECT_EQ(Strings(consumer2), std::vector<std::string>{"after"});
  router.UnsubscribeAndJoin();
}

TEST(MessageRouter, CA14_SecondRouteForOneTypeIsRefusedWithCallersLocation) {
  auto topic = Topic::Create("router-ca14-duplicate");
  MessageRouter router = MessageRouter::Create(topic);
  const Recorder first = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddRoute(Type1().get(), first.Handler()));
  PLEXUS_EXPECT_MISUSE_HERE(router.AddRoute(Type1().get(), [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(router.AddRoute(Type1(), [](const std::string&, const Message&) {}));
  {
    ScopedMisuseAction log(MisuseAction::kLog);
    LogCapture capture;
    EXPECT_FALSE(router.AddRoute(Type1().get(), [](const Message&) {}));
    EXPECT_NE(capture.Text().find("RouterTest.Type1"), std::string::npos) << capture.Text();
  }
  // The first route is still the one in force.
  auto m = Type1().Make("kept");
  router.PublishAndWait(m);
  EXPECT_TRUE(first.Contains(m.get()));
  // Removed, the type may be routed again.
  ASSERT_TRUE(router.RemoveRoute(Type1().get()));
  EXPECT_TRUE(router.AddRoute(Type1().get(), [](const Message&) {}));
  router.UnsubscribeAndJoin();
}

TEST_P(MessageRouterModes, CA14_ThrowingRouteIsCountedAndRouterGoesOn) {
  auto topic = Topic::Create("router-ca14-throw");
  MessageRouter router = MessageRouter::Create(topic, options());
  const Recorder consumer2 = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddRoute(Type1(), [](const std::string& s, const Message&) {
    throw std::runtime_error("route failed on " + s);
  }));
  ASSERT_TRUE(router.AddRoute(Type2().get(), consumer2.Handler()));
  LogCapture capture;
  for (int i = 0; i < 3; ++i) {
    topic->Publish(Type1().Make("bad"));
    router.PublishAndWait(Type2().Make("good"));
  }
  EXPECT_EQ(consumer2.Count(), 3u);
  const MessageRouterStats stats = router.Stats();
  EXPECT_EQ(stats.failed, 3u);
  ASSERT_NE(FindRoute(stats, "RouterTest.Type1"), nullptr);
  EXPECT_EQ(FindRoute(stats, "RouterTest.Type1")->calls, 3u);
  EXPECT_EQ(FindRoute(stats, "RouterTest.Type1")->failed, 3u);
  EXPECT_EQ(FindRoute(stats, "RouterTest.Type2")->failed, 0u);
  EXPECT_NE(capture.Text().find("route failed on bad"), std::string::npos) << capture.Text();
  EXPECT_TRUE(router.UnsubscribeAndJoin());
}

// -----------------------------------------------------------------------------------------
// Format routes
// -----------------------------------------------------------------------------------------

TEST_P(MessageRouterModes, FormatRouteTakesTypesWithThatFormatterAndNoRouteOfTheirOwn) {
  auto topic = Topic::Create("router-formats");
  MessageRouter router = MessageRouter::Create(topic, options());
  const Recorder json = Recorder::IgnoringChanges();
  const Recorder text = Recorder::IgnoringChanges();
  const Recorder own = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddFormatRoute(MessageFormat::kJson, json.Handler()));
  ASSERT_TRUE(router.AddFormatRoute(MessageFormat::kText, text.Handler()));
  ASSERT_TRUE(router.AddRoute(Type1().get(), own.Handler()));
  // Without a default route, the filter lets through routed types and formats only.
  topic->Publish(JsonType().Make("j"));
  topic->Publish(TextType().Make("t"));
  topic->Publish(Type3().Make("dropped"));
  router.PublishAndWait(Type1().Make("own"));
  EXPECT_EQ(Strings(json), std::vector<std::string>{"j"});
  EXPECT_EQ(Strings(text), std::vector<std::string>{"t"});
  EXPECT_EQ(Strings(own), std::vector<std::string>{"own"});
  const MessageRouterStats stats = router.Stats();
  EXPECT_GE(stats.subscription.filtered, 1u);  // the Type3 message
  // A type route beats a format route.
  ASSERT_TRUE(router.AddRoute(JsonType().get(), own.Handler()));
  router.PublishAndWait(JsonType().Make("j2"));
  EXPECT_EQ(Strings(own), (std::vector<std::string>{"own", "j2"}));
  EXPECT_TRUE(router.RemoveFormatRoute(MessageFormat::kText));
  EXPECT_FALSE(router.RemoveFormatRoute(MessageFormat::kText));
  router.UnsubscribeAndJoin();
  // The final message never goes to a format route.
  EXPECT_EQ(json.FinalCount(), 0);
}

TEST(MessageRouter, FormatRouteSharingAFormatIsRefused) {
  auto topic = Topic::Create("router-formats-misuse");
  MessageRouter router = MessageRouter::Create(topic);
  ASSERT_TRUE(router.AddFormatRoute(MessageFormat::kJson, [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(
      router.AddFormatRoute(MessageFormat::kJson | MessageFormat::kText, [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(router.AddFormatRoute(MessageFormat::kNone, [](const Message&) {}));
  EXPECT_TRUE(router.AddFormatRoute(MessageFormat::kText, [](const Message&) {}));
}

// -----------------------------------------------------------------------------------------
// Misuse
// -----------------------------------------------------------------------------------------

TEST(MessageRouter, MisuseIsReportedWithTheCallersLocation) {
  PLEXUS_EXPECT_MISUSE_HERE(MessageRouter::Create(nullptr));
  MessageRouter empty;
  EXPECT_FALSE(empty);
  PLEXUS_EXPECT_MISUSE_HERE(empty.AddRoute(Type1().get(), [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(empty.SetDefaultRoute([](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(empty.RemoveRoute(Type1().get()));
  PLEXUS_EXPECT_MISUSE_HERE(empty.PublishAndWait(Type1().Make("x")));
  EXPECT_FALSE(empty.IsSubscribed());
  EXPECT_TRUE(empty.Stats().routes.empty());

  auto topic = Topic::Create("router-misuse");
  MessageRouter router = MessageRouter::Create(topic);
  PLEXUS_EXPECT_MISUSE_HERE(router.AddRoute(nullptr, [](const Message&) {}));
  PLEXUS_EXPECT_MISUSE_HERE(router.AddRouteHandler(Type1().get(), RouteHandler()));
  PLEXUS_EXPECT_MISUSE_HERE(router.SetDefaultRouteHandler(RouteHandler()));
  PLEXUS_EXPECT_MISUSE_HERE(router.RemoveRoute(nullptr));
  EXPECT_TRUE(router.Stats().routes.empty());
}

TEST_P(MessageRouterModes, JoinFromARouteIsMisuseNotAHang) {
  auto topic = Topic::Create("router-join-self");
  MessageRouter router = MessageRouter::Create(topic, options());
  ScopedMisuseAction log(MisuseAction::kLog);
  LogCapture capture;
  std::atomic<int> join_result{-1};
  ASSERT_TRUE(router.AddRoute(Type1().get(), [&](const Message&) {
    router.Unsubscribe();
    join_result.store(router.Join() ? 1 : 0);
  }));
  router.PublishAndWait(Type1().Make("join"));
  EXPECT_EQ(join_result.load(), 0);
  EXPECT_TRUE(router.Join());
}

// -----------------------------------------------------------------------------------------
// Lifecycle
// -----------------------------------------------------------------------------------------

TEST_P(MessageRouterModes, DroppingTheHandleUnsubscribesAndTheDefaultGetsTheFinalMessage) {
  auto topic = Topic::Create("router-drop");
  const Recorder fallback = Recorder::IgnoringChanges();
  const Recorder consumer1 = Recorder::IgnoringChanges();
  {
    MessageRouter router = MessageRouter::Create(topic, options());
    router.AddRoute(Type1().get(), consumer1.Handler());
    router.SetDefaultRoute(fallback.Handler());
    router.PublishAndWait(Type1().Make("one"));
    EXPECT_EQ(topic->SubscriberCount(), 1u);
  }
  EXPECT_TRUE(fallback.WaitForFinal());
  EXPECT_EQ(topic->SubscriberCount(), 0u);
  EXPECT_EQ(consumer1.FinalCount(), 0);
  EXPECT_EQ(fallback.FinalCount(), 1);
}

TEST_P(MessageRouterModes, FinalMessageGoesToTheChangeRouteWhenThereIsOne) {
  auto topic = Topic::Create("router-change-route");
  MessageRouter router = MessageRouter::Create(topic, options());
  const Recorder changes;  // records notices
  const Recorder fallback;
  ASSERT_TRUE(router.AddRoute(SubscriptionChangeType().get(), changes.Handler()));
  ASSERT_TRUE(router.SetDefaultRoute(fallback.Handler()));
  router.UnsubscribeAndJoin();
  EXPECT_EQ(changes.FinalCount(), 1);
  EXPECT_EQ(fallback.FinalCount(), 0);
}

// A router, like any subscription, hears the other subscriptions' notices only if it asks (a
// route for the change type): otherwise a subscribe storm would cost every router on the topic
// one delivery per subscription.
TEST_P(MessageRouterModes, HearsOtherSubscriptionsNoticesOnlyWhenItAsks) {
  auto topic = Topic::Create("router-notices");
  MessageRouter quiet = MessageRouter::Create(topic, options());
  const Recorder consumer1 = Recorder::IgnoringChanges();
  ASSERT_TRUE(quiet.AddRoute(Type1().get(), consumer1.Handler()));
  MessageRouter listening = MessageRouter::Create(topic, options());
  const Recorder changes;
  const Recorder consumer2 = Recorder::IgnoringChanges();
  ASSERT_TRUE(listening.AddRoute(SubscriptionChangeType().get(), changes.Handler()));
  ASSERT_TRUE(listening.AddRoute(Type2().get(), consumer2.Handler()));
  for (int i = 0; i < 3; ++i) {
    Subscription other = Subscribe(topic, [](const Message&) {});
    other.UnsubscribeAndJoin();
  }
  // Barriers: each router has handled everything published before.
  quiet.PublishAndWait(Type1().Make("barrier"));
  listening.PublishAndWait(Type2().Make("barrier"));
  // The quiet router: its own subscribe notice only (no route takes it), nothing of the others.
  EXPECT_EQ(quiet.Stats().unrouted, 1u);
  EXPECT_EQ(consumer1.Count(), 1u);
  // The listening router: the three others' subscribe and unsubscribe notices.
  std::size_t others = 0;
  for (const Ref<Message>& m : changes.Messages()) {
    const SubscriptionChange* change = SubscriptionChangeType().Get(*m);
    ASSERT_NE(change, nullptr);
    if (change->subscription_id != listening.Id()) ++others;
  }
  EXPECT_EQ(others, 6u);
  quiet.UnsubscribeAndJoin();
  listening.UnsubscribeAndJoin();
}

TEST_P(MessageRouterModes, WithoutADefaultTheFinalMessageIsUnroutedAndTheRouterIsDone) {
  auto topic = Topic::Create("router-no-default");
  MessageRouter router = MessageRouter::Create(topic, options());
  const Recorder consumer1 = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddRoute(Type1().get(), consumer1.Handler()));
  router.PublishAndWait(Type2().Make("filtered"));  // never accepted: returns at once
  EXPECT_TRUE(router.IsSubscribed());
  EXPECT_TRUE(router.Unsubscribe());
  EXPECT_FALSE(router.Unsubscribe());
  EXPECT_TRUE(router.Join());
  EXPECT_TRUE(router.IsDone());
  const MessageRouterStats stats = router.Stats();
  // The subscribe notice and the final message.
  EXPECT_EQ(stats.unrouted, 2u);
  EXPECT_EQ(stats.subscription.filtered, 1u);
  EXPECT_EQ(consumer1.CallbackCount(), 0u);
}

TEST_P(MessageRouterModes, TopicPublishAndWaitWorksThroughTheRoutersSubscription) {
  auto parent = Topic::Create("router-parent");
  auto child = Topic::Create("router-child");
  Forward forward = ForwardAll(child, parent);
  MessageRouter router = MessageRouter::Create(parent, options());
  const Recorder consumer1 = Recorder::IgnoringChanges();
  ASSERT_TRUE(router.AddRoute(Type1().get(), consumer1.Handler()));
  auto m = Type1().Make("through the forward");
  const PublishResult result = child->PublishAndWait(m, router.GetSubscription());
  EXPECT_EQ(result.delivered, 1u);
  EXPECT_TRUE(consumer1.Contains(m.get()));
  EXPECT_EQ(router.GetTopic().get(), parent.get());
  router.UnsubscribeAndJoin();
}

TEST_P(MessageRouterModes, MovedRouterKeepsItsRoutes) {
  auto topic = Topic::Create("router-move");
  const Recorder consumer1 = Recorder::IgnoringChanges();
  MessageRouter first = MessageRouter::Create(topic, options());
  first.AddRoute(Type1().get(), consumer1.Handler());
  MessageRouter second = std::move(first);
  EXPECT_FALSE(first);  // NOLINT(bugprone-use-after-move): moved-from is empty, by contract
  second.PublishAndWait(Type1().Make("moved"));
  EXPECT_EQ(consumer1.Count(), 1u);
  second.UnsubscribeAndJoin();
}

// A route removing itself from inside its own callback: the call returns at once (it cannot
// wait for itself), the current call finishes, and no later message reaches the route.
TEST_P(MessageRouterModes, RouteRemovingItselfFromItsCallback) {
  auto topic = Topic::Create("router-self-remove");
  MessageRouter router = MessageRouter::Create(topic, options());
  const Recorder fallback = Recorder::IgnoringChanges();
  std::atomic<int> calls{0};
  std::atomic<int> removed_result{-1};
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> alive = token;
  ASSERT_TRUE(router.AddRoute(Type1().get(), [&, token](const Message&) {
    calls.fetch_add(1);
    removed_result.store(router.RemoveRoute(Type1().get()) ? 1 : 0);
    // Still running, so still alive: the callback is destroyed after the dispatch.
    EXPECT_EQ(*token, 0);
  }));
  token.reset();
  ASSERT_TRUE(router.SetDefaultRoute(fallback.Handler()));
  router.PublishAndWait(Type1().Make("first"));
  router.PublishAndWait(Type1().Make("second"));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(removed_result.load(), 1);
  EXPECT_EQ(Strings(fallback), std::vector<std::string>{"second"});
  // The parked callback was freed once its dispatch returned (by a later dispatch at the
  // latest).
  EXPECT_TRUE(alive.expired());
  router.UnsubscribeAndJoin();
}

// A removal from another thread while the route's callback runs returns only after the
// callback returned, and the callback (with what it captured) is destroyed by then.
TEST_P(MessageRouterModes, RemovalFromAnotherThreadWaitsForTheRunningCallback) {
  auto topic = Topic::Create("router-remove-running");
  MessageRouter router = MessageRouter::Create(topic, options());
  std::atomic<bool> entered{false};
  std::atomic<bool> remover_started{false};
  std::atomic<bool> returned{false};
  auto token = std::make_shared<int>(7);
  std::weak_ptr<int> alive = token;
  ASSERT_TRUE(router.AddRoute(Type1().get(), [&, token](const Message&) {
    entered.store(true);
    // Hold the callback until the remover is on its way, then a little longer, so that the
    // removal usually finds the callback running (the check below holds either way).
    while (!remover_started.load()) std::this_thread::yield();
    for (int i = 0; i < 1000; ++i) std::this_thread::yield();
    returned.store(true);
  }));
  token.reset();
  std::thread publisher([&] { topic->Publish(Type1().Make("slow")); });
  ASSERT_TRUE(WaitUntil([&] { return entered.load(); }));
  std::thread remover([&] {
    remover_started.store(true);
    EXPECT_TRUE(router.RemoveRoute(Type1().get()));
    EXPECT_TRUE(returned.load());
    EXPECT_TRUE(alive.expired());
  });
  remover.join();
  publisher.join();
  router.UnsubscribeAndJoin();
}

TEST_P(MessageRouterModes, RouteAddedFromACallbackTakesTheNextMessage) {
  auto topic = Topic::Create("router-add-inside");
  MessageRouter router = MessageRouter::Create(topic, options());
  const Recorder consumer2 = Recorder::IgnoringChanges();
  std::atomic<int> added{-1};
  ASSERT_TRUE(router.AddRoute(Type1().get(), [&](const Message&) {
    if (added.load() < 0) added.store(router.AddRoute(Type2().get(), consumer2.Handler()) ? 1 : 0);
  }));
  router.PublishAndWait(Type1().Make("adds"));
  router.PublishAndWait(Type2().Make("routed"));
  EXPECT_EQ(added.load(), 1);
  EXPECT_EQ(Strings(consumer2), std::vector<std::string>{"routed"});
  router.UnsubscribeAndJoin();
}

// A synchronous router entered again on its own thread (a route publishing on the topic): a
// removal made in the inner dispatch must not wait for the outer one, which is its caller.
TEST(MessageRouter, SynchronousReentrantDispatchRemovesWithoutWaitingForItself) {
  auto topic = Topic::Create("router-reentrant");
  MessageRouter router = MessageRouter::Create(topic, InMode(DeliveryMode::kSynchronous));
  const Recorder fallback = Recorder::IgnoringChanges();
  std::atomic<int> outer_calls{0};
  std::atomic<int> removed{-1};
  ASSERT_TRUE(router.AddRoute(Type1().get(), [&](const Message&) {
    outer_calls.fetch_add(1);
    topic->Publish(Type2().Make("inner"));
  }));
  ASSERT_TRUE(router.AddRoute(Type2().get(), [&](const Message&) {
    removed.store(router.RemoveRoute(Type1().get()) ? 1 : 0);
  }));
  ASSERT_TRUE(router.SetDefaultRoute(fallback.Handler()));
  topic->Publish(Type1().Make("outer"));
  topic->Publish(Type1().Make("after"));
  EXPECT_EQ(outer_calls.load(), 1);
  EXPECT_EQ(removed.load(), 1);
  EXPECT_EQ(Strings(fallback), std::vector<std::string>{"after"});
  router.UnsubscribeAndJoin();
}

// -----------------------------------------------------------------------------------------
// Stress: route removal racing dispatch
// -----------------------------------------------------------------------------------------

// Rounds of: messages flowing from two publishers, the route removed from the test thread, a
// flag set once the removal returned (which no later call of the route may see), a new route
// added for the next round.
TEST_P(MessageRouterModes, StressRemovalRacingDispatchNeverCallsAfterRemoval) {
  const int rounds = plexus::kSanitizeThread ? 20 : plexus_test::BusScaled(200);
  auto topic = Topic::Create("router-stress");
  MessageRouter router = MessageRouter::Create(topic, options());
  const Recorder fallback = Recorder::IgnoringChanges();
  std::atomic<int> late_calls{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> publishers;
  for (int p = 0; p < 2; ++p) {
    publishers.emplace_back([&] {
      // Paced by a barrier now and then, so that a pool router's queue stays short.
      for (int n = 0; !stop.load(); ++n) {
        topic->Publish(Type1().Make("s"));
        if (n % 64 == 0) {
          topic->PublishAndWait(Type2().Make("s"), router.GetSubscription());
        } else {
          topic->Publish(Type2().Make("s"));
        }
      }
    });
  }
  std::atomic<std::size_t> default_calls{0};
  router.SetDefaultRoute([&](const Message&) { default_calls.fetch_add(1); });
  for (int round = 0; round < rounds; ++round) {
    auto removed = std::make_shared<std::atomic<bool>>(false);
    auto calls = std::make_shared<Counter>();
    ASSERT_TRUE(router.AddRoute(Type1().get(), [&late_calls, removed, calls](const Message&) {
      if (removed->load()) late_calls.fetch_add(1);
      calls->Add();
    }));
    ASSERT_TRUE(calls->WaitFor(1 + static_cast<std::size_t>(round % 3)));
    ASSERT_TRUE(router.RemoveRoute(Type1().get()));
    removed->store(true);
  }
  stop.store(true);
  for (std::thread& t : publishers) t.join();
  router.UnsubscribeAndJoin();
  EXPECT_EQ(late_calls.load(), 0);
  EXPECT_GT(default_calls.load(), 0u);
  EXPECT_EQ(router.Stats().failed, 0u);
}

// Two threads adding and removing routes (each its own type) while two publishers run: the
// tables they swap, park and free race each other and the dispatch.
TEST_P(MessageRouterModes, StressConcurrentRouteChangesNeverCallARemovedRoute) {
  const int rounds = plexus::kSanitizeThread ? 50 : plexus_test::BusScaled(1000);
  auto topic = Topic::Create("router-stress-mutators");
  MessageRouter router = MessageRouter::Create(topic, options());
  std::atomic<int> late_calls{0};
  std::atomic<std::size_t> default_calls{0};
  router.SetDefaultRoute([&](const Message&) { default_calls.fetch_add(1); });
  std::atomic<bool> stop{false};
  std::vector<std::thread> publishers;
  for (int p = 0; p < 2; ++p) {
    publishers.emplace_back([&] {
      for (int n = 0; !stop.load(); ++n) {
        topic->Publish(Type1().Make("s"));
        topic->Publish(Type2().Make("s"));
        if (n % 64 == 0) topic->PublishAndWait(Type3().Make("s"), router.GetSubscription());
      }
    });
  }
  std::vector<std::thread> mutators;
  for (const TypedMessageType<std::string>* type : {&Type1(), &Type2()}) {
    mutators.emplace_back([&, type] {
      for (int round = 0; round < rounds; ++round) {
        auto removed = std::make_shared<std::atomic<bool>>(false);
        EXPECT_TRUE(
            router.AddRoute(*type, [&late_calls, removed](const std::string&, const Message&) {
              if (removed->load()) late_calls.fetch_add(1);
            }));
        if (round % 4 == 0) std::this_thread::yield();
        EXPECT_TRUE(router.RemoveRoute(type->get()));
        removed->store(true);
      }
    });
  }
  for (std::thread& t : mutators) t.join();
  stop.store(true);
  for (std::thread& t : publishers) t.join();
  router.UnsubscribeAndJoin();
  EXPECT_EQ(late_calls.load(), 0);
  EXPECT_GT(default_calls.load(), 0u);
  EXPECT_EQ(router.Stats().routes.size(), 1u);  // the default
}

// Mutators adding and removing a type route and two cache routes (each its own thread) while
// publishers publish snapshots on the original topic (updates on the output) and plain
// messages on the output: no removed route is ever called once its removal returned, and the
// tables swapped, parked and freed by type and cache route changes race each other and the
// dispatch.
TEST_P(MessageRouterModes, StressTypeAndCacheRouteChangesNeverCallARemovedRoute) {
  const int rounds = plexus::kSanitizeThread ? 50 : plexus_test::BusScaled(1000);
  CachedTopic cached("router-stress-cache-routes");
  MessageRouter router = MessageRouter::Create(cached.Output(), options());
  std::atomic<int> late_calls{0};
  std::atomic<std::size_t> default_calls{0};
  std::atomic<std::size_t> route_calls{0};
  router.SetDefaultRoute([&](const Message&) { default_calls.fetch_add(1); });
  std::atomic<bool> stop{false};
  std::vector<std::thread> publishers;
  for (int p = 0; p < 2; ++p) {
    publishers.emplace_back([&] {
      for (int n = 0; !stop.load(); ++n) {
        cached.original->Publish(Cache1().Make("s"));
        cached.original->Publish(Cache2().Make("s"));
        cached.Output()->Publish(Type1().Make("s"));
        if (n % 64 == 0) router.PublishAndWait(Type3().Make("s"));
      }
    });
  }
  std::vector<std::thread> mutators;
  // The type route, for a plain type.
  mutators.emplace_back([&] {
    for (int round = 0; round < rounds; ++round) {
      auto removed = std::make_shared<std::atomic<bool>>(false);
      EXPECT_TRUE(router.AddRoute(Type1(), [&, removed](const std::string&, const Message&) {
        if (removed->load()) late_calls.fetch_add(1);
        route_calls.fetch_add(1);
      }));
      if (round % 4 == 0) std::this_thread::yield();
      EXPECT_TRUE(router.RemoveRoute(Type1().get()));
      removed->store(true);
    }
  });
  // The cache routes, typed and untyped.
  mutators.emplace_back([&] {
    for (int round = 0; round < rounds; ++round) {
      auto removed = std::make_shared<std::atomic<bool>>(false);
      EXPECT_TRUE(router.AddCacheRoute(
          Cache1(), [&, removed](const CacheUpdate&, const std::string*, const std::string*) {
            if (removed->load()) late_calls.fetch_add(1);
            route_calls.fetch_add(1);
          }));
      if (round % 4 == 1) std::this_thread::yield();
      EXPECT_TRUE(router.RemoveCacheRoute(Cache1().get()));
      removed->store(true);
    }
  });
  mutators.emplace_back([&] {
    for (int round = 0; round < rounds; ++round) {
      auto removed = std::make_shared<std::atomic<bool>>(false);
      EXPECT_TRUE(router.AddCacheRoute(Cache2().get(), [&, removed](const Message&) {
        if (removed->load()) late_calls.fetch_add(1);
        route_calls.fetch_add(1);
      }));
      if (round % 4 == 2) std::this_thread::yield();
      EXPECT_TRUE(router.RemoveCacheRoute(Cache2().get()));
      removed->store(true);
    }
  });
  for (std::thread& t : mutators) t.join();
  stop.store(true);
  for (std::thread& t : publishers) t.join();
  router.UnsubscribeAndJoin();
  EXPECT_EQ(late_calls.load(), 0);
  EXPECT_GT(default_calls.load(), 0u);
  EXPECT_EQ(router.Stats().failed, 0u);
  EXPECT_EQ(router.Stats().routes.size(), 1u);  // the default
  EXPECT_FALSE(router.HasCacheRoute(Cache1().get()));
}

}  // namespace
}  // namespace plexus
