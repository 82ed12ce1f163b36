// The cache acceptance cases CA01-CA08 and the cache's part of CA17, one or more tests per
// case, named after it, and the cache's misuse reports. Cases about delivery to the caching
// topic's subscribers run for each delivery mode. The concurrent case (CA10) is in
// cache_stress_test.cc. Every wait is on a condition or a publish-and-wait barrier, never a
// sleep.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "epoch.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/clock.h"
#include "plexus/core/misuse.h"

// Allocations made by this thread, counted by replacing the global operator new (not under the
// sanitizers, which bring their own); one of a given size can be made to fail (for the other
// suites of this binary that test an allocation failure).
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
namespace plexus_test {
namespace {
thread_local std::uint64_t tl_allocations = 0;
thread_local std::size_t tl_fail_size = 0;
}  // namespace
std::uint64_t AllocationCount() {
  return tl_allocations;
}
void FailNextAllocationOfSize(std::size_t size) {
  tl_fail_size = size;
}
// Out of line: the compiler must not pair the inlined malloc and free across the replacement.
[[gnu::noinline]] void* Allocate(std::size_t size) {
  if (size == tl_fail_size && size != 0) [[unlikely]] {
    tl_fail_size = 0;
    throw std::bad_alloc();
  }
  ++tl_allocations;
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
[[gnu::noinline]] void Free(void* p) noexcept {
  std::free(p);
}
// Over-aligned allocations (the message allocator's slabs) are not counted, but one can be
// made to fail like the others.
[[gnu::noinline]] void* AllocateAligned(std::size_t size, std::align_val_t align) {
  if (size == tl_fail_size && size != 0) [[unlikely]] {
    tl_fail_size = 0;
    throw std::bad_alloc();
  }
  const auto alignment = static_cast<std::size_t>(align);
  void* p = std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace plexus_test

void* operator new(std::size_t size, std::align_val_t align) {
  return plexus_test::AllocateAligned(size, align);
}
void operator delete(void* p, std::align_val_t) noexcept {
  plexus_test::Free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  plexus_test::Free(p);
}

void* operator new(std::size_t size) {
  return plexus_test::Allocate(size);
}
void* operator new[](std::size_t size) {
  return plexus_test::Allocate(size);
}
void operator delete(void* p) noexcept {
  plexus_test::Free(p);
}
void operator delete[](void* p) noexcept {
  plexus_test::Free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  plexus_test::Free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  plexus_test::Free(p);
}
#endif

namespace plexus {
namespace {

using plexus_test::InMode;
using plexus_test::LogCapture;
using plexus_test::Recorder;
using plexus_test::ScopedMisuseAction;
using plexus_test::StringType;
using plexus_test::WaitUntil;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

struct Item {
  std::string id;
  int value = 0;
};

const TypedMessageType<Item>& Cacheable() {
  static const auto type = TypedMessageType<Item>::Create("Cacheable");
  return type;
}
const TypedMessageType<Item>& NonCacheable() {
  static const auto type = TypedMessageType<Item>::Create("NonCacheable");
  return type;
}

// The id function of the cases: only "Cacheable" messages have an id.
std::string CacheableId(const Message& m) {
  const Item* item = Cacheable().Get(m);
  return item != nullptr ? item->id : std::string();
}

// The same, in the view form: a view of the id the message holds.
std::string_view CacheableIdView(const Message& m) {
  const Item* item = Cacheable().Get(m);
  return item != nullptr ? std::string_view(item->id) : std::string_view();
}

Ref<Message> Make(const std::string& id, int value, NodeId node = NodeId::Local()) {
  return Message::Create(Cacheable().get(), Item{id, value}, node);
}

NodeId Foreign(std::uint8_t n) {
  return NodeId(NodeId::Bytes{0x02, 0, 0, 0, 0, n});
}

const CacheUpdate& UpdateOf(const Ref<Message>& m) {
  const CacheUpdate* u = CacheUpdateType().Get(*m);
  EXPECT_NE(u, nullptr) << "not a cache update: " << m->Type().Name();
  static const CacheUpdate none;
  return u != nullptr ? *u : none;
}

int ValueOf(const Ref<Message>& m) {
  const Item* item = m != nullptr ? m->As<Item>() : nullptr;
  return item != nullptr ? item->value : -1;
}

// A cache over "SomeTopic", with a recorder (ignoring notices) on the caching topic's output.
struct Fixture {
  explicit Fixture(DeliveryMode mode = DeliveryMode::kPool,
                   Cache::AggregateFunction aggregate = nullptr,
                   Cache::AggregatePublishFunction publish = nullptr)
      : cache(Cache::Create(&CacheableId, std::move(aggregate), std::move(publish))),
        topic(Topic::Create("SomeTopic")),
        caching(CachingTopic::Create(topic, cache)),
        recorder(Recorder::IgnoringChanges()),
        sub(Subscription::Create(caching->Output(), recorder.Handler(), InMode(mode))) {}

  // Returns once everything published on the output before it has reached the recorder; the
  // marker itself is recorded too and removed from what Updates() returns.
  void Barrier() { caching->Output()->PublishAndWait(StringType().Make("barrier"), sub); }
  std::vector<Ref<Message>> Updates() const {
    std::vector<Ref<Message>> out;
    for (Ref<Message>& m : recorder.Messages()) {
      if (CacheUpdateType().Get(*m) != nullptr) out.push_back(std::move(m));
    }
    return out;
  }

  Ref<Cache> cache;
  Ref<Topic> topic;
  Ref<CachingTopic> caching;
  Recorder recorder;
  Subscription sub;
};

class CacheModes : public ::testing::TestWithParam<DeliveryMode> {};
INSTANTIATE_TEST_SUITE_P(AllModes, CacheModes, ::testing::ValuesIn(plexus_test::AllModes()),
                         plexus_test::ModeParamName());

// --- CA01 ------------------------------------------------------------------------------------

TEST_P(CacheModes, CA01_NonCacheableMessagesAreNotForwarded) {
  Fixture f(GetParam());
  // (The caching subscription's own subscribe notice counts as not cacheable too.)
  const std::uint64_t before = f.caching->Stats().not_cacheable;
  f.topic->Publish(NonCacheable(), Item{"1", 1});
  f.Barrier();
  EXPECT_TRUE(f.Updates().empty());
  EXPECT_EQ(f.cache->Size(), 0u);
  EXPECT_EQ(f.caching->Stats().not_cacheable, before + 1);
}

TEST(Cache, CA01_MessagesWithoutANodeAreNotCached) {
  Fixture f;
  f.topic->Publish(Make("1", 1, NodeId::None()));
  f.Barrier();
  EXPECT_TRUE(f.Updates().empty());
  EXPECT_EQ(f.cache->Size(), 0u);
}

TEST(Cache, CA01_OutputTopicIsNamedAfterTheOriginal) {
  Fixture f;
  EXPECT_EQ(f.caching->Output()->Name().rfind("cache:", 0), 0u);
  EXPECT_THAT(f.caching->Output()->Name(), ::testing::EndsWith("/SomeTopic"));
  EXPECT_EQ(f.caching->Original(), f.topic);
  EXPECT_EQ(f.caching->GetCache(), f.cache);
}

// An update happened when its cause was published: it carries the timestamp of the snapshot
// (or the clear) that caused it; a removal's updates are stamped when it ran.
TEST(Cache, CA01_UpdatesCarryTheTimestampOfWhatCausedThem) {
  Fixture f(DeliveryMode::kSynchronous);
  const Ref<Message> first = Make("1", 1);
  const Ref<Message> second = Make("1", 2);
  f.topic->Publish(first);
  f.topic->Publish(second);
  const Ref<Message> clear = MakeCacheClear(second);
  f.topic->Publish(clear);
  f.topic->Publish(Make("2", 3, Foreign(1)));
  const WallClock::time_point before_removal = FastWallClock::now();
  EXPECT_EQ(f.caching->RemoveNode(Foreign(1)), 1u);
  const WallClock::time_point after_removal = FastWallClock::now();
  const std::vector<Ref<Message>> updates = f.Updates();
  ASSERT_EQ(updates.size(), 5u);
  EXPECT_EQ(updates[0]->Timestamp(), first->Timestamp());
  EXPECT_EQ(updates[1]->Timestamp(), second->Timestamp());
  EXPECT_EQ(UpdateOf(updates[1]).new_snapshot, second);
  EXPECT_EQ(updates[2]->Timestamp(), clear->Timestamp());
  EXPECT_EQ(UpdateOf(updates[2]).new_snapshot, nullptr);
  EXPECT_EQ(updates[3]->Timestamp(), UpdateOf(updates[3]).new_snapshot->Timestamp());
  EXPECT_LE(before_removal, updates[4]->Timestamp());
  EXPECT_LE(updates[4]->Timestamp(), after_removal);
}

// --- CA02 ------------------------------------------------------------------------------------

TEST_P(CacheModes, CA02_CacheUpdatesCarryOldAndNew) {
  Fixture f(GetParam());
  const Ref<Message> a1 = Make("1", 1);
  const Ref<Message> b1 = Make("2", 1);
  f.topic->Publish(a1);
  f.topic->Publish(b1);
  f.Barrier();
  auto updates = f.Updates();
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(UpdateOf(updates[0]).type, Cacheable().get());
  EXPECT_EQ(UpdateOf(updates[0]).old_snapshot, nullptr);
  EXPECT_EQ(UpdateOf(updates[0]).new_snapshot, a1);
  EXPECT_EQ(UpdateOf(updates[1]).old_snapshot, nullptr);
  EXPECT_EQ(UpdateOf(updates[1]).new_snapshot, b1);
  EXPECT_EQ(f.cache->Get(Cacheable(), "1"), a1);
  EXPECT_EQ(f.cache->Get(Cacheable(), "2"), b1);

  const Ref<Message> b2 = Make("2", 2);
  f.topic->Publish(b2);
  f.Barrier();
  updates = f.Updates();
  ASSERT_EQ(updates.size(), 3u);
  EXPECT_EQ(UpdateOf(updates[2]).old_snapshot, b1);
  EXPECT_EQ(UpdateOf(updates[2]).new_snapshot, b2);
  EXPECT_EQ(f.cache->Get(Cacheable(), "2"), b2);

  f.topic->Publish(MakeCacheClear(a1));
  f.Barrier();
  updates = f.Updates();
  ASSERT_EQ(updates.size(), 4u);
  EXPECT_EQ(UpdateOf(updates[3]).type, Cacheable().get());
  EXPECT_EQ(UpdateOf(updates[3]).old_snapshot, a1);
  EXPECT_EQ(UpdateOf(updates[3]).new_snapshot, nullptr);
  EXPECT_EQ(f.cache->Get(Cacheable(), "1"), nullptr);
  EXPECT_EQ(f.cache->Size(), 1u);
}

TEST(Cache, CA02_RepublishingTheSameSnapshotStillUpdates) {
  Fixture f;
  const Ref<Message> a = Make("1", 1);
  f.topic->Publish(a);
  f.topic->Publish(a);
  f.Barrier();
  const auto updates = f.Updates();
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(UpdateOf(updates[1]).old_snapshot, a);
  EXPECT_EQ(UpdateOf(updates[1]).new_snapshot, a);
}

TEST(Cache, CA02_UpdatesAreBuiltOnlyForReceivers) {
  auto cache = Cache::Create(&CacheableId);
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  topic->Publish(Make("1", 1));
  EXPECT_EQ(caching->Stats().updates_published, 0u);
  EXPECT_NE(cache->Get(Cacheable(), "1"), nullptr);

  // A forward is a receiver too (the cache pattern forwards outputs into a shared topic).
  auto twin = Topic::Create("twin");
  Recorder recorder = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(twin, recorder.Handler());
  Forward forward = ForwardAll(caching->Output(), twin);
  topic->Publish(Make("1", 2));
  EXPECT_EQ(caching->Stats().updates_published, 1u);
  twin->PublishAndWait(StringType().Make("barrier"), sub);
  EXPECT_EQ(recorder.Count(), 2u);
}

// --- CA03 ------------------------------------------------------------------------------------

TEST_P(CacheModes, CA03_CacheIsCurrentWhenPublishReturns) {
  Fixture f(GetParam());
  const int n = plexus_test::BusScaled(200);
  std::vector<Ref<Message>> published;
  for (int i = 0; i < n; ++i) {
    Ref<Message> m = Make(std::to_string(i % 7), i);
    f.topic->Publish(m);
    // From the publishing thread, with no barrier: the caching subscription is synchronous.
    ASSERT_EQ(f.cache->Get(Cacheable(), std::to_string(i % 7)), m);
    published.push_back(std::move(m));
  }
  f.Barrier();
  const auto updates = f.Updates();
  ASSERT_EQ(updates.size(), published.size());
  for (std::size_t i = 0; i < updates.size(); ++i) {
    EXPECT_EQ(UpdateOf(updates[i]).new_snapshot, published[i]) << "update " << i;
  }
}

// --- CA04 ------------------------------------------------------------------------------------

TEST(Cache, CA04_DumpFollowsPutsUpdatesAndClears) {
  Fixture f;
  const Ref<Message> a1 = Make("1", 1);
  const Ref<Message> b1 = Make("2", 1);
  f.topic->Publish(a1);
  f.topic->Publish(b1);
  EXPECT_THAT(f.cache->Dump(), UnorderedElementsAre(a1, b1));
  const Ref<Message> b2 = Make("2", 2);
  f.topic->Publish(b2);
  EXPECT_THAT(f.cache->Dump(), UnorderedElementsAre(a1, b2));
  f.topic->Publish(MakeCacheClear(a1));
  EXPECT_THAT(f.cache->Dump(), UnorderedElementsAre(b2));
  EXPECT_THAT(f.cache->Dump(Cacheable()), UnorderedElementsAre(b2));
  EXPECT_TRUE(f.cache->Dump(SubscriptionChangeType()).empty());
  EXPECT_TRUE(f.cache->Dump(NonCacheable()).empty());
}

// --- CA05 ------------------------------------------------------------------------------------

TEST(Cache, CA05_NodesAreKeptSideBySide) {
  Fixture f;
  const Ref<Message> local = Make("x", 1);
  const Ref<Message> a = Make("x", 2, Foreign(1));
  const Ref<Message> b = Make("x", 3, Foreign(2));
  const Ref<Message> a_other = Make("y", 4, Foreign(1));
  for (const auto& m : {local, a, b, a_other}) f.topic->Publish(m);

  EXPECT_EQ(f.cache->Get(Cacheable(), "x"), local);
  EXPECT_EQ(f.cache->GetByNode(Cacheable(), "x", Foreign(1)), a);
  EXPECT_EQ(f.cache->GetByNode(Cacheable(), "x", Foreign(2)), b);
  EXPECT_EQ(f.cache->GetByNode(Cacheable(), "x", NodeId::Local()), local);
  EXPECT_EQ(f.cache->GetByNode(Cacheable(), "x", Foreign(3)), nullptr);
  EXPECT_THAT(f.cache->GetAll(Cacheable(), "x"), UnorderedElementsAre(local, a, b));
  EXPECT_THAT(f.cache->DumpByNode(nullptr, Foreign(1)), UnorderedElementsAre(a, a_other));
  EXPECT_THAT(f.cache->DumpByNode(Cacheable(), Foreign(2)), UnorderedElementsAre(b));
  EXPECT_THAT(f.cache->Dump(), UnorderedElementsAre(local));
  EXPECT_THAT(f.cache->DumpAll(), UnorderedElementsAre(local, a, b, a_other));
  EXPECT_EQ(f.cache->Get(Cacheable(), "y"), nullptr);

  // A newer snapshot from one node replaces that node's only.
  const Ref<Message> a2 = Make("x", 5, Foreign(1));
  f.topic->Publish(a2);
  EXPECT_THAT(f.cache->GetAll(Cacheable(), "x"), UnorderedElementsAre(local, a2, b));

  // Clearing one node's snapshot leaves the others.
  f.topic->Publish(MakeCacheClear(a2));
  EXPECT_THAT(f.cache->GetAll(Cacheable(), "x"), UnorderedElementsAre(local, b));
  f.topic->Publish(MakeCacheClear(local));
  EXPECT_EQ(f.cache->Get(Cacheable(), "x"), nullptr);
  EXPECT_THAT(f.cache->GetAll(Cacheable(), "x"), UnorderedElementsAre(b));
  f.Barrier();
  const auto updates = f.Updates();
  ASSERT_EQ(updates.size(), 7u);
  EXPECT_EQ(UpdateOf(updates[4]).old_snapshot, a);
  EXPECT_EQ(UpdateOf(updates[4]).new_snapshot, a2);
  EXPECT_EQ(UpdateOf(updates[5]).old_snapshot, a2);
  EXPECT_EQ(UpdateOf(updates[6]).old_snapshot, local);
}

// --- CA06 ------------------------------------------------------------------------------------

// The sum of the values of every node's snapshot; the previous aggregate when the sum is the
// same (so that nothing is published).
Ref<Message> SumAggregate(const CacheEntry& entry, const Ref<Message>&) {
  int sum = 0;
  for (const Ref<Message>& s : entry.All()) sum += ValueOf(s);
  if (entry.Aggregate() != nullptr && ValueOf(entry.Aggregate()) == sum) return entry.Aggregate();
  return Message::Create(Cacheable().get(), Item{entry.Id(), sum}, NodeId::None());
}

struct AggregateLog {
  std::mutex mu;
  std::vector<Ref<Message>> published;
  std::vector<Ref<Message>> Published() {
    std::lock_guard lock(mu);
    return published;
  }
};

TEST(Cache, CA06_AggregatesFollowTheirSnapshots) {
  auto log = std::make_shared<AggregateLog>();
  Fixture f(DeliveryMode::kPool, &SumAggregate,
            [log](const Ref<Topic>& original, const Ref<Message>& aggregate) {
              {
                std::lock_guard lock(log->mu);
                log->published.push_back(aggregate);
              }
              // Re-published on the original topic, it comes back as non-cacheable.
              original->Publish(aggregate);
            });
  auto aggregate_updates = [&] {
    std::vector<Ref<Message>> out;
    for (const Ref<Message>& u : f.Updates()) {
      const CacheUpdate& cu = UpdateOf(u);
      const Ref<Message>& any = cu.new_snapshot != nullptr ? cu.new_snapshot : cu.old_snapshot;
      if (any->Node().IsNone()) out.push_back(u);
    }
    return out;
  };

  f.topic->Publish(Make("x", 1));
  Ref<Message> agg = f.cache->GetByNode(Cacheable(), "x", NodeId::None());
  EXPECT_EQ(ValueOf(agg), 1);
  f.topic->Publish(Make("x", 2, Foreign(1)));
  EXPECT_EQ(ValueOf(f.cache->GetByNode(Cacheable(), "x", NodeId::None())), 3);
  EXPECT_THAT(f.cache->DumpByNode(nullptr, NodeId::None()),
              UnorderedElementsAre(f.cache->GetByNode(Cacheable(), "x", NodeId::None())));
  f.Barrier();
  auto aggs = aggregate_updates();
  ASSERT_EQ(aggs.size(), 2u);
  EXPECT_EQ(UpdateOf(aggs[0]).old_snapshot, nullptr);
  EXPECT_EQ(UpdateOf(aggs[0]).new_snapshot, agg);
  EXPECT_EQ(UpdateOf(aggs[1]).old_snapshot, agg);
  EXPECT_EQ(ValueOf(UpdateOf(aggs[1]).new_snapshot), 3);
  EXPECT_EQ(log->Published().size(), 2u);

  // Same value again: a snapshot update, but the aggregate is unchanged.
  f.topic->Publish(Make("x", 2, Foreign(1)));
  f.Barrier();
  EXPECT_EQ(aggregate_updates().size(), 2u);
  EXPECT_EQ(log->Published().size(), 2u);

  f.topic->Publish(MakeCacheClear(f.cache->Get(Cacheable(), "x")));
  EXPECT_EQ(ValueOf(f.cache->GetByNode(Cacheable(), "x", NodeId::None())), 2);
  // The last snapshot goes: the aggregate disappears, and nothing is republished.
  f.topic->Publish(MakeCacheClear(f.cache->GetByNode(Cacheable(), "x", Foreign(1))));
  EXPECT_EQ(f.cache->GetByNode(Cacheable(), "x", NodeId::None()), nullptr);
  EXPECT_EQ(f.cache->Size(), 0u);
  f.Barrier();
  aggs = aggregate_updates();
  ASSERT_EQ(aggs.size(), 4u);
  EXPECT_EQ(ValueOf(UpdateOf(aggs[2]).new_snapshot), 2);
  EXPECT_EQ(ValueOf(UpdateOf(aggs[3]).old_snapshot), 2);
  EXPECT_EQ(UpdateOf(aggs[3]).new_snapshot, nullptr);
  EXPECT_EQ(log->Published().size(), 3u);
  EXPECT_EQ(f.cache->Stats().aggregate_failures, 0u);
}

TEST(Cache, CA06_AThrowingAggregateKeepsThePreviousOne) {
  LogCapture capture;
  bool fail = false;
  Fixture f(DeliveryMode::kPool, [&](const CacheEntry& entry, const Ref<Message>& s) {
    if (fail) throw std::runtime_error("no sum today");
    return SumAggregate(entry, s);
  });
  f.topic->Publish(Make("x", 1));
  const Ref<Message> agg = f.cache->GetByNode(Cacheable(), "x", NodeId::None());
  fail = true;
  f.topic->Publish(Make("x", 2, Foreign(1)));
  EXPECT_EQ(f.cache->GetByNode(Cacheable(), "x", NodeId::None()), agg);
  EXPECT_NE(f.cache->GetByNode(Cacheable(), "x", Foreign(1)), nullptr);
  EXPECT_EQ(f.cache->Stats().aggregate_failures, 1u);
  EXPECT_THAT(capture.Text(), HasSubstr("no sum today"));
}

// --- CA07 ------------------------------------------------------------------------------------

TEST(Cache, CA07_NodeLeavesAndItsSnapshotsGo) {
  Fixture f(DeliveryMode::kPool, &SumAggregate);
  const Ref<Message> local_x = Make("x", 1);
  const Ref<Message> a_x = Make("x", 2, Foreign(1));
  const Ref<Message> a_y = Make("y", 5, Foreign(1));
  const Ref<Message> b_y = Make("y", 1, Foreign(2));
  for (const auto& m : {local_x, a_x, a_y, b_y}) f.topic->Publish(m);
  f.Barrier();
  const std::size_t before = f.Updates().size();

  EXPECT_EQ(f.caching->RemoveNode(Foreign(1)), 2u);
  EXPECT_TRUE(f.cache->DumpByNode(nullptr, Foreign(1)).empty());
  EXPECT_THAT(f.cache->Dump(), UnorderedElementsAre(local_x));
  EXPECT_THAT(f.cache->DumpAll(), UnorderedElementsAre(local_x, b_y));
  EXPECT_EQ(ValueOf(f.cache->GetByNode(Cacheable(), "x", NodeId::None())), 1);
  EXPECT_EQ(ValueOf(f.cache->GetByNode(Cacheable(), "y", NodeId::None())), 1);

  f.Barrier();
  const auto updates = f.Updates();
  std::vector<Ref<Message>> cleared;
  int aggregate_updates = 0;
  for (std::size_t i = before; i < updates.size(); ++i) {
    const CacheUpdate& u = UpdateOf(updates[i]);
    if (u.old_snapshot != nullptr && u.old_snapshot->Node().IsNone()) {
      ++aggregate_updates;
    } else {
      EXPECT_EQ(u.new_snapshot, nullptr);
      cleared.push_back(u.old_snapshot);
    }
  }
  EXPECT_THAT(cleared, UnorderedElementsAre(a_x, a_y));
  EXPECT_EQ(aggregate_updates, 2);
  // Nothing left of that node: a second removal does nothing.
  EXPECT_EQ(f.caching->RemoveNode(Foreign(1)), 0u);
}

// --- CA08 ------------------------------------------------------------------------------------

// Drops the four handles in the order `order` gives (0 cache, 1 topic, 2 caching topic,
// 3 subscriber) and checks that everything is let go.
void TearDownInOrder(DeliveryMode mode, const std::array<int, 4>& order) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> alive = token;
  Ref<Cache> cache = Cache::Create([token](const Message& m) { return CacheableId(m); });
  token.reset();
  Ref<Topic> topic = Topic::Create("SomeTopic");
  Ref<CachingTopic> caching = CachingTopic::Create(topic, cache);
  const std::uint64_t topic_id = topic->Id();
  const std::uint64_t output_id = caching->Output()->Id();
  Recorder recorder = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(caching->Output(), recorder.Handler(), InMode(mode));
  topic->Publish(Make("1", 1));
  topic->Publish(Make("1", 2));
  caching->Output()->PublishAndWait(StringType().Make("barrier"), sub);
  ASSERT_EQ(recorder.Count(), 3u);

  for (int handle : order) {
    switch (handle) {
      case 0:
        cache.Reset();
        break;
      case 1:
        topic.Reset();
        break;
      case 2:
        caching.Reset();
        break;
      case 3:
        plexus_test::Drop(sub);
        break;
    }
  }
  EXPECT_TRUE(recorder.WaitForFinal());
  EXPECT_TRUE(plexus_test::WaitForTopicGone(topic_id));
  EXPECT_TRUE(plexus_test::WaitForTopicGone(output_id));
  EXPECT_TRUE(WaitUntil([&] { return alive.expired(); })) << "the cache was not let go";
  EXPECT_EQ(recorder.FinalCount(), 1);
  EXPECT_EQ(recorder.AfterFinalCount(), 0);
}

TEST_P(CacheModes, CA08_TeardownInEveryOrder) {
  std::array<int, 4> order = {0, 1, 2, 3};
  int orders = 0;
  do {
    SCOPED_TRACE(::testing::Message() << "order " << order[0] << order[1] << order[2] << order[3]);
    TearDownInOrder(GetParam(), order);
    ++orders;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(orders, 24);
}

TEST(Cache, CA08_UnsubscribeAndJoinThenDrop) {
  Fixture f;
  f.topic->Publish(Make("1", 1));
  EXPECT_TRUE(f.caching->UnsubscribeAndJoin());
  EXPECT_FALSE(f.caching->IsSubscribed());
  EXPECT_FALSE(f.caching->Unsubscribe());  // a second time: nothing to do
  // Caching has stopped; what was cached stays.
  f.topic->Publish(Make("1", 2));
  EXPECT_EQ(ValueOf(f.cache->Get(Cacheable(), "1")), 1);
}

// --- CA09 ------------------------------------------------------------------------------------

TEST(Cache, CA09_CachePatternSeesEveryObject) {
  auto all = CachePatternAll::Create("objects", &CacheableId);
  Recorder raw = Recorder::IgnoringChanges();
  Recorder cached = Recorder::IgnoringChanges();
  Subscription raw_sub = Subscription::Create(all->GetTopic(), raw.Handler());
  Subscription cached_sub = Subscription::Create(all->CachedTopic(), cached.Handler());
  auto one = CachePatternOne::Create(all, "objects/1");
  auto two = CachePatternOne::Create(all, "objects/2");
  const Ref<Message> a = Make("1", 1);
  const Ref<Message> b = Make("2", 1);
  one->GetTopic()->Publish(a);
  two->GetTopic()->Publish(b);
  all->GetTopic()->PublishAndWait(StringType().Make("barrier"), raw_sub);
  all->CachedTopic()->PublishAndWait(StringType().Make("barrier"), cached_sub);

  EXPECT_TRUE(raw.Contains(a.get()));
  EXPECT_TRUE(raw.Contains(b.get()));
  std::vector<Ref<Message>> news;
  for (const Ref<Message>& m : cached.Messages()) {
    if (const CacheUpdate* u = CacheUpdateType().Get(*m)) news.push_back(u->new_snapshot);
  }
  EXPECT_THAT(news, UnorderedElementsAre(a, b));
  EXPECT_FALSE(cached.Contains(a.get()));  // the twin carries updates only
  EXPECT_EQ(all->GetCache()->Get(Cacheable(), "1"), a);
  EXPECT_EQ(all->GetCache()->Get(Cacheable(), "2"), b);
  EXPECT_THAT(all->GetCache()->Dump(), UnorderedElementsAre(a, b));
}

TEST(Cache, CA09_DroppingAnObjectRemovesItsForwardsOnly) {
  auto all = CachePatternAll::Create("objects", &CacheableId);
  Recorder raw = Recorder::IgnoringChanges();
  Subscription raw_sub = Subscription::Create(all->GetTopic(), raw.Handler());
  auto one = CachePatternOne::Create(all, "objects/1");
  auto two = CachePatternOne::Create(all, "objects/2");
  const Ref<Message> a = Make("1", 1);
  one->GetTopic()->Publish(a);
  const Ref<Topic> kept = one->GetTopic();
  const std::uint64_t output_id = one->CachedTopic()->Id();
  one.Reset();
  EXPECT_TRUE(plexus_test::WaitForTopicGone(output_id));
  EXPECT_EQ(plexus_test::ListedTopic(kept->Id())->forwards_out, 0u);

  // The dropped object's topic reaches nothing any more; its cached snapshot stays; the other
  // object is untouched.
  const Ref<Message> late = Make("1", 2);
  kept->Publish(late);
  const Ref<Message> b = Make("2", 1);
  two->GetTopic()->Publish(b);
  all->GetTopic()->PublishAndWait(StringType().Make("barrier"), raw_sub);
  EXPECT_TRUE(raw.Contains(a.get()));
  EXPECT_FALSE(raw.Contains(late.get()));
  EXPECT_TRUE(raw.Contains(b.get()));
  EXPECT_EQ(all->GetCache()->Get(Cacheable(), "1"), a);
  EXPECT_EQ(all->GetCache()->Get(Cacheable(), "2"), b);
  EXPECT_EQ(plexus_test::ListedTopic(all->GetTopic()->Id())->subscribers, 1u);
}

TEST(Cache, CA09_CachePatternTeardownLetsEverythingGo) {
  auto all = CachePatternAll::Create("objects", &CacheableId);
  auto one = CachePatternOne::Create(all, "objects/1");
  Recorder recorder = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(all->GetTopic(), recorder.Handler());
  one->GetTopic()->Publish(Make("1", 1));
  const std::vector<std::uint64_t> ids = {all->GetTopic()->Id(), all->CachedTopic()->Id(),
                                          one->GetTopic()->Id(), one->CachedTopic()->Id()};
  all.Reset();  // the object does not keep the pattern, only what it forwards into
  one.Reset();
  plexus_test::Drop(sub);
  EXPECT_TRUE(recorder.WaitForFinal());
  for (std::uint64_t id : ids) EXPECT_TRUE(plexus_test::WaitForTopicGone(id)) << id;
}

TEST(Cache, CA09_Misuse) {
  auto all = CachePatternAll::Create("objects", &CacheableId);
  PLEXUS_EXPECT_MISUSE_HERE(CachePatternAll::Create("", &CacheableId));
  PLEXUS_EXPECT_MISUSE_HERE(CachePatternAll::Create("x", nullptr));
  PLEXUS_EXPECT_MISUSE_HERE(CachePatternOne::Create(nullptr, "x"));
  PLEXUS_EXPECT_MISUSE_HERE(CachePatternOne::Create(all, ""));
}

// --- CA17 (the cache's part) -----------------------------------------------------------------

TEST(Cache, CA17_ClearOfAnUncachedSnapshotPublishesNothing) {
  Fixture f;
  f.topic->Publish(MakeCacheClear(Make("1", 1)));
  f.topic->Publish(Make("2", 1));
  f.topic->Publish(MakeCacheClear(Make("2", 1, Foreign(1))));  // cached, but not this node's
  f.Barrier();
  EXPECT_EQ(f.Updates().size(), 1u);
  EXPECT_EQ(f.cache->Size(), 1u);
  EXPECT_EQ(f.caching->Stats().cleared, 0u);
}

// Publishes a good snapshot, then a snapshot and a clear on which `id` throws `what`: both
// failures are counted and logged, and the cache and the output keep only the good one.
void ExpectThrowingIdFunctionLeavesTheCacheUnchanged(CacheIdFunction id, const std::string& what) {
  LogCapture capture;
  auto cache = Cache::Create(std::move(id));
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  Recorder recorder = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(caching->Output(), recorder.Handler());
  const Ref<Message> good = Make("1", 1);
  topic->Publish(good);
  topic->Publish(Make("1", -1));
  topic->Publish(MakeCacheClear(Make("1", -1)));
  caching->Output()->PublishAndWait(StringType().Make("barrier"), sub);
  EXPECT_EQ(cache->Get(Cacheable(), "1"), good);
  EXPECT_EQ(caching->Stats().id_failures, 2u);
  EXPECT_EQ(recorder.Count(), 2u);  // one update and the barrier
  EXPECT_THAT(capture.Text(), HasSubstr(what));
  EXPECT_THAT(capture.Text(), HasSubstr("SomeTopic"));
}

TEST(Cache, CA17_ThrowingIdFunctionLeavesTheCacheUnchanged) {
  ExpectThrowingIdFunctionLeavesTheCacheUnchanged(
      [](const Message& m) -> std::string {
        const Item* item = Cacheable().Get(m);
        if (item != nullptr && item->value < 0) throw std::runtime_error("bad snapshot");
        return CacheableId(m);
      },
      "bad snapshot");
}

TEST(Cache, CA17_ThrowingViewIdFunctionLeavesTheCacheUnchanged) {
  ExpectThrowingIdFunctionLeavesTheCacheUnchanged(
      [](const Message& m) -> std::string_view {
        const Item* item = Cacheable().Get(m);
        if (item != nullptr && item->value < 0) throw std::runtime_error("bad view");
        return CacheableIdView(m);
      },
      "bad view");
}

// --- The id function's two forms -------------------------------------------------------------

TEST(Cache, IdFunctionFormFollowsItsResultType) {
  const CacheIdFunction view([](const Message&) { return std::string_view("v"); });
  const CacheIdFunction built([](const Message&) { return std::string("s"); });
  const CacheIdFunction wrapped(Cache::IdFunction([](const Message&) { return std::string("w"); }));
  const CacheIdFunction wrapped_view(
      Cache::IdViewFunction([](const Message&) { return std::string_view("x"); }));
  const CacheIdFunction literal([](const Message&) { return "c"; });  // const char*: built
  const CacheIdFunction pointer(&CacheableIdView);
  const Ref<Message> m = Make("id", 1);
  EXPECT_TRUE(view.IsView());
  EXPECT_FALSE(built.IsView());
  EXPECT_FALSE(wrapped.IsView());
  EXPECT_TRUE(wrapped_view.IsView());
  EXPECT_FALSE(literal.IsView());
  EXPECT_TRUE(pointer.IsView());
  EXPECT_EQ(view.String(*m), "v");
  EXPECT_EQ(built.String(*m), "s");
  EXPECT_EQ(wrapped.String(*m), "w");
  EXPECT_EQ(wrapped_view.String(*m), "x");
  EXPECT_EQ(literal.String(*m), "c");
  EXPECT_EQ(pointer.View(*m), "id");
  for (const CacheIdFunction* f : {&view, &built, &wrapped, &wrapped_view, &literal, &pointer}) {
    EXPECT_TRUE(static_cast<bool>(*f));
  }
  EXPECT_FALSE(static_cast<bool>(CacheIdFunction()));
  EXPECT_FALSE(static_cast<bool>(CacheIdFunction(nullptr)));
  EXPECT_FALSE(static_cast<bool>(CacheIdFunction(Cache::IdFunction())));
  EXPECT_FALSE(static_cast<bool>(CacheIdFunction(Cache::IdViewFunction())));
  std::string_view (*null_view)(const Message&) = nullptr;
  EXPECT_FALSE(static_cast<bool>(CacheIdFunction(null_view)));
}

TEST(Cache, EmptyViewIdFunctionIsMisuse) {
  PLEXUS_EXPECT_MISUSE_HERE(Cache::Create(Cache::IdViewFunction()));
  PLEXUS_EXPECT_MISUSE_HERE(CachePatternAll::Create("all", Cache::IdViewFunction()));
}

// A caching topic over a view id function caches and publishes as one over a string id function:
// the same updates, the same cache, the id copied into each new entry (the message that held
// the viewed id may go).
TEST_P(CacheModes, CA02_ViewIdFunctionCachesAndUpdatesAsAStringOne) {
  auto cache = Cache::Create(&CacheableIdView);
  ASSERT_NE(cache, nullptr);
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  Recorder recorder = Recorder::IgnoringChanges();
  Subscription sub =
      Subscription::Create(caching->Output(), recorder.Handler(), InMode(GetParam()));
  const Ref<Message> a2 = Make("a", 2);
  topic->Publish(Make("a", 1));  // dropped after the publish: the entry keeps its own id
  topic->Publish(a2);
  topic->Publish(Make("b", 1));
  topic->Publish(MakeCacheClear(Make("b", 1)));
  caching->Output()->PublishAndWait(StringType().Make("barrier"), sub);
  std::vector<Ref<Message>> updates;
  for (Ref<Message>& m : recorder.Messages()) {
    if (CacheUpdateType().Get(*m) != nullptr) updates.push_back(std::move(m));
  }
  ASSERT_EQ(updates.size(), 4u);
  EXPECT_EQ(UpdateOf(updates[0]).old_snapshot, nullptr);
  EXPECT_EQ(ValueOf(UpdateOf(updates[0]).new_snapshot), 1);
  EXPECT_EQ(ValueOf(UpdateOf(updates[1]).old_snapshot), 1);
  EXPECT_EQ(UpdateOf(updates[1]).new_snapshot, a2);
  EXPECT_EQ(ValueOf(UpdateOf(updates[3]).old_snapshot), 1);
  EXPECT_EQ(UpdateOf(updates[3]).new_snapshot, nullptr);
  EXPECT_EQ(cache->Get(Cacheable(), "a"), a2);
  EXPECT_EQ(cache->Get(Cacheable(), "b"), nullptr);
  EXPECT_EQ(cache->IdOf(*a2), "a");
  const std::vector<Ref<const CacheEntry>> entries = cache->DumpEntries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]->Id(), "a");
  EXPECT_EQ(caching->Stats().cached, 3u);
  EXPECT_EQ(caching->Stats().cleared, 1u);
}

TEST(Cache, CA01_EmptyIdFromAViewIdFunctionIsNotCacheable) {
  auto cache = Cache::Create(&CacheableIdView);
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  Recorder recorder = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(caching->Output(), recorder.Handler());
  const std::uint64_t before = caching->Stats().not_cacheable;
  topic->Publish(NonCacheable(), Item{"1", 1});  // no id: the view is empty
  topic->Publish(Make("", 1));                   // an empty id held by the message
  caching->Output()->PublishAndWait(StringType().Make("barrier"), sub);
  EXPECT_EQ(recorder.Count(), 1u);  // the barrier only
  EXPECT_EQ(cache->Size(), 0u);
  EXPECT_EQ(caching->Stats().not_cacheable, before + 2);
  EXPECT_EQ(caching->Stats().cached, 0u);
}

TEST(Cache, CA09_CachePatternTakesAViewIdFunction) {
  auto all = CachePatternAll::Create("objects", &CacheableIdView);
  ASSERT_NE(all, nullptr);
  auto one = CachePatternOne::Create(all, "objects/x");
  const Ref<Message> m = Make("x", 5);
  one->GetTopic()->Publish(m);
  EXPECT_EQ(all->GetCache()->Get(Cacheable(), "x"), m);
}

// --- Notices -----------------------------------------------------------------------------------

TEST(Cache, UnsubscribeNoticeClearsACachedSubscriptionNotice) {
  auto cache = Cache::Create([](const Message& m) -> std::string {
    const SubscriptionChange* c = SubscriptionChangeType().Get(m);
    return c != nullptr ? c->subscription_id : std::string();
  });
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  Subscription other = Subscribe(topic, [](const Message&) {});
  const std::string id = other.Id();
  EXPECT_NE(cache->Get(SubscriptionChangeType(), id), nullptr);
  other.UnsubscribeAndJoin();
  EXPECT_EQ(cache->Get(SubscriptionChangeType(), id), nullptr);
}

// --- Misuse ----------------------------------------------------------------------------------

TEST(Cache, MisuseIsReportedAtTheCaller) {
  auto cache = Cache::Create(&CacheableId);
  auto topic = Topic::Create("SomeTopic");
  PLEXUS_EXPECT_MISUSE_HERE(Cache::Create(nullptr));
  PLEXUS_EXPECT_MISUSE_HERE(cache->Get(nullptr, "1"));
  PLEXUS_EXPECT_MISUSE_HERE(cache->GetByNode(nullptr, "1", Foreign(1)));
  PLEXUS_EXPECT_MISUSE_HERE(cache->GetAll(nullptr, "1"));
  PLEXUS_EXPECT_MISUSE_HERE(cache->Put(Make("1", 1), ""));
  PLEXUS_EXPECT_MISUSE_HERE(cache->Put(nullptr, "1"));
  PLEXUS_EXPECT_MISUSE_HERE(cache->Clear(nullptr, "1", NodeId::Local()));
  PLEXUS_EXPECT_MISUSE_HERE(cache->Clear(Cacheable(), "", NodeId::Local()));
  PLEXUS_EXPECT_MISUSE_HERE(CachingTopic::Create(nullptr, cache));
  PLEXUS_EXPECT_MISUSE_HERE(CachingTopic::Create(topic, nullptr));
  PLEXUS_EXPECT_MISUSE_HERE(MakeCacheClear(nullptr));
  EXPECT_EQ(cache->Size(), 0u);
}

TEST(Cache, MisuseRemoveNodeAfterUnsubscribe) {
  Fixture f;
  f.topic->Publish(Make("1", 1, Foreign(1)));
  f.caching->UnsubscribeAndJoin();
  PLEXUS_EXPECT_MISUSE_HERE(f.caching->RemoveNode(Foreign(1)));
  EXPECT_NE(f.cache->GetByNode(Cacheable(), "1", Foreign(1)), nullptr);
}

TEST(Cache, MisuseWriteFromTheAggregateFunction) {
  ScopedMisuseAction action(MisuseAction::kLog);
  Cache* self = nullptr;
  CacheChange inner;
  auto cache = Cache::Create(
      &CacheableId,
      [&](const CacheEntry& entry, const Ref<Message>&) {
        inner = self->Put(Make("other", 1), "other");
        return entry.Aggregate();
      },
      nullptr);
  self = cache.get();
  const std::uint64_t reports = MisuseReportCount();
  const CacheChange change = cache->Put(Make("1", 1), "1");
  EXPECT_EQ(MisuseReportCount(), reports + 1);
  EXPECT_FALSE(inner.SnapshotChanged());
  EXPECT_TRUE(change.SnapshotChanged());
  EXPECT_EQ(cache->Get(Cacheable(), "other"), nullptr);
  // Reads from the aggregate function are fine.
  auto reader = Cache::Create(
      &CacheableId,
      [&](const CacheEntry& entry, const Ref<Message>&) {
        EXPECT_EQ(self->Get(Cacheable(), entry.Id()), nullptr);  // not stored yet
        return entry.Aggregate();
      },
      nullptr);
  self = reader.get();
  reader->Put(Make("2", 1), "2");
}

// --- Direct use ------------------------------------------------------------------------------

TEST(Cache, PutAndClearReportWhatChanged) {
  auto cache = Cache::Create(&CacheableId);
  const Ref<Message> a = Make("1", 1);
  CacheChange c = cache->Put(a, "1");
  EXPECT_EQ(c.type, Cacheable().get());
  EXPECT_EQ(c.id, "1");
  EXPECT_EQ(c.old_snapshot, nullptr);
  EXPECT_EQ(c.new_snapshot, a);
  EXPECT_FALSE(c.AggregateChanged());
  c = cache->Clear(Cacheable(), "1", Foreign(9));
  EXPECT_FALSE(c.SnapshotChanged());
  c = cache->Clear(Cacheable(), "1", NodeId::Local());
  EXPECT_EQ(c.old_snapshot, a);
  EXPECT_EQ(cache->Size(), 0u);
  EXPECT_EQ(cache->Stats().puts, 1u);
  EXPECT_EQ(cache->Stats().clears, 1u);
  EXPECT_FALSE(cache->Put(Make("1", 1, NodeId::None()), "1").SnapshotChanged());
}

// --- Node removal is one step for the writers ------------------------------------------------

// A snapshot of the node published while its removal is under way (here: by a thread that a
// synchronous subscriber of the output starts and joins as each clear update is published) is
// not cached and publishes nothing; once RemoveNode returns, nothing of the node is left and a
// new snapshot is cached.
TEST(Cache, CA07_APutDuringTheRemovalOfItsNodeIsNotKept) {
  Fixture f;
  for (int i = 0; i < 64; ++i) f.topic->Publish(Make("k" + std::to_string(i), i, Foreign(1)));
  int during = 0;
  Subscription racer = Subscribe(
      f.caching->Output(),
      [&](const Message& m) {
        const CacheUpdate* u = CacheUpdateType().Get(m);
        if (u == nullptr || u->new_snapshot != nullptr || during >= 64) return;
        // Every id again, shards already walked and not yet walked alike, from another thread:
        // publishing on the original topic from here would order the output's lock before the
        // original's, the reverse of the caching topic's order.
        std::thread([&] {
          f.topic->Publish(Make("k" + std::to_string(during), 1000 + during, Foreign(1)));
        }).join();
        ++during;
      },
      InMode(DeliveryMode::kSynchronous));
  f.Barrier();
  const std::size_t before = f.Updates().size();
  EXPECT_EQ(f.caching->RemoveNode(Foreign(1)), 64u);
  EXPECT_EQ(during, 64);
  EXPECT_TRUE(f.cache->DumpByNode(nullptr, Foreign(1)).empty());
  EXPECT_EQ(f.cache->Size(), 0u);
  f.Barrier();
  for (std::size_t i = before; i < f.Updates().size(); ++i) {
    EXPECT_EQ(UpdateOf(f.Updates()[i]).new_snapshot, nullptr) << "a put during the removal";
  }
  EXPECT_EQ(f.caching->Stats().cached, 64u);
  racer.UnsubscribeAndJoin();

  const Ref<Message> back = Make("k1", 7, Foreign(1));
  f.topic->Publish(back);
  EXPECT_EQ(f.cache->GetByNode(Cacheable(), "k1", Foreign(1)), back);
}

TEST(Cache, CA07_RemoveNodeOfTheCacheReportsEachChange) {
  auto cache = Cache::Create(&CacheableId);
  cache->Put(Make("1", 1, Foreign(1)), "1");
  cache->Put(Make("2", 2, Foreign(1)), "2");
  cache->Put(Make("2", 3, Foreign(2)), "2");
  std::vector<int> cleared;
  EXPECT_EQ(
      cache->RemoveNode(Foreign(1),
                        [&](const CacheChange& c) {
                          EXPECT_EQ(c.new_snapshot, nullptr);
                          cleared.push_back(ValueOf(c.old_snapshot));
                          // The node is still being removed: a put of it is refused.
                          EXPECT_FALSE(cache->Put(Make("3", 9, Foreign(1)), "3").SnapshotChanged());
                        }),
      2u);
  EXPECT_THAT(cleared, UnorderedElementsAre(1, 2));
  EXPECT_EQ(cache->GetByNode(Cacheable(), "3", Foreign(1)), nullptr);
  EXPECT_EQ(ValueOf(cache->GetByNode(Cacheable(), "2", Foreign(2))), 3);
  EXPECT_EQ(cache->RemoveNode(NodeId::None()), 0u);
  EXPECT_TRUE(cache->Put(Make("3", 9, Foreign(1)), "3").SnapshotChanged());
}

// A cache made for another node (one of several in-process nodes) files that node's snapshots
// as local and the process's own as foreign, in every query.
TEST(Cache, CA07_LocalNodeIsPerCache) {
  auto cache = Cache::Create(&CacheableId, nullptr, nullptr, Foreign(7));
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->LocalNode(), Foreign(7));
  EXPECT_EQ(Cache::Create(&CacheableId)->LocalNode(), NodeId::Local());
  cache->Put(Make("1", 1, Foreign(7)), "1");
  cache->Put(Make("1", 2, NodeId::Local()), "1");
  EXPECT_EQ(ValueOf(cache->Get(Cacheable(), "1")), 1);
  EXPECT_EQ(ValueOf(cache->GetByNode(Cacheable(), "1", Foreign(7))), 1);
  EXPECT_EQ(ValueOf(cache->GetByNode(Cacheable(), "1", NodeId::Local())), 2);
  Ref<const CacheEntry> e = cache->GetEntry(Cacheable(), "1");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(ValueOf(e->Local()), 1);
  ASSERT_EQ(e->Foreign().size(), 1u);
  EXPECT_EQ(e->Foreign()[0].node, NodeId::Local());
  ASSERT_EQ(cache->Dump(Cacheable()).size(), 1u);
  EXPECT_EQ(ValueOf(cache->Dump(Cacheable())[0]), 1);
  // Removing the process's node leaves the cache's own local snapshot alone.
  EXPECT_EQ(cache->RemoveNode(NodeId::Local()), 1u);
  EXPECT_EQ(ValueOf(cache->Get(Cacheable(), "1")), 1);
  EXPECT_EQ(cache->RemoveNode(Foreign(7)), 1u);
  EXPECT_EQ(cache->Size(), 0u);
}

TEST(Cache, CA07_LocalNodeNoneIsMisuse) {
  ScopedMisuseAction guard(MisuseAction::kThrow);
  EXPECT_THROW(Cache::Create(&CacheableId, nullptr, nullptr, NodeId::None()), UsageError);
}

// --- Readers ---------------------------------------------------------------------------------

// An entry a reader holds is never reused, however many writes replace it afterwards.
TEST(Cache, CA10_AHeldEntryOutlivesItsReplacements) {
  auto cache = Cache::Create(&CacheableId);
  const Ref<Message> first = Make("held", 1);
  cache->Put(first, "held");
  const Ref<const CacheEntry> held = cache->GetEntry(Cacheable(), "held");
  ASSERT_NE(held, nullptr);
  for (int i = 0; i < 5000; ++i) {
    cache->Put(Make("held", i + 2), "held");
    cache->Put(Make("other" + std::to_string(i % 100), i), "other" + std::to_string(i % 100));
  }
  EXPECT_EQ(held->Local(), first);
  EXPECT_EQ(held->Id(), "held");
  EXPECT_EQ(ValueOf(cache->Get(Cacheable(), "held")), 5001);
  EXPECT_EQ(cache->Size(), 101u);
}

// Updates of an entry's local snapshot (done in place when no reader holds the entry) report the
// snapshot they replaced, both to a direct caller and in the updates a caching topic publishes;
// the entry's other snapshots stay; an entry held before such an update keeps what it held.
TEST(Cache, CA10_UpdatesInPlaceReportWhatTheyReplaced) {
  Fixture f;
  const Ref<Message> v1 = Make("1", 1);
  const Ref<Message> v2 = Make("1", 2);
  const Ref<Message> v3 = Make("1", 3);
  f.topic->Publish(v1);
  f.topic->Publish(v2);
  f.topic->Publish(v3);
  f.Barrier();
  auto updates = f.Updates();
  ASSERT_EQ(updates.size(), 3u);
  EXPECT_EQ(UpdateOf(updates[0]).old_snapshot, nullptr);
  EXPECT_EQ(UpdateOf(updates[0]).new_snapshot, v1);
  EXPECT_EQ(UpdateOf(updates[1]).type, Cacheable().get());
  EXPECT_EQ(UpdateOf(updates[1]).old_snapshot, v1);
  EXPECT_EQ(UpdateOf(updates[1]).new_snapshot, v2);
  EXPECT_EQ(UpdateOf(updates[2]).old_snapshot, v2);
  EXPECT_EQ(UpdateOf(updates[2]).new_snapshot, v3);
  EXPECT_EQ(f.cache->Get(Cacheable(), "1"), v3);
  EXPECT_EQ(f.cache->Size(), 1u);
  EXPECT_EQ(f.caching->Stats().cached, 3u);

  // A direct put reports the same, with the id; a foreign snapshot beside it stays.
  const Ref<Message> foreign = Make("1", 10, Foreign(1));
  EXPECT_TRUE(f.cache->Put(foreign, "1").SnapshotChanged());
  const Ref<Message> v4 = Make("1", 4);
  CacheChange change = f.cache->Put(v4, "1");
  EXPECT_EQ(change.type, Cacheable().get());
  EXPECT_EQ(change.id, "1");
  EXPECT_EQ(change.old_snapshot, v3);
  EXPECT_EQ(change.new_snapshot, v4);
  EXPECT_FALSE(change.AggregateChanged());
  EXPECT_EQ(f.cache->Get(Cacheable(), "1"), v4);
  EXPECT_EQ(f.cache->GetByNode(Cacheable(), "1", Foreign(1)), foreign);
  EXPECT_THAT(f.cache->GetAll(Cacheable(), "1"), ::testing::ElementsAre(v4, foreign));
  EXPECT_THAT(f.cache->Dump(Cacheable()), ::testing::ElementsAre(v4));
  EXPECT_THAT(f.cache->DumpAll(), UnorderedElementsAre(v4, foreign));

  // An entry held whole keeps its snapshots; the next updates go on from the newest.
  const Ref<const CacheEntry> held = f.cache->GetEntry(Cacheable(), "1");
  ASSERT_NE(held, nullptr);
  const Ref<Message> v5 = Make("1", 5);
  const Ref<Message> v6 = Make("1", 6);
  change = f.cache->Put(v5, "1");
  EXPECT_EQ(change.old_snapshot, v4);
  EXPECT_EQ(change.new_snapshot, v5);
  change = f.cache->Put(v6, "1");
  EXPECT_EQ(change.old_snapshot, v5);
  EXPECT_EQ(change.new_snapshot, v6);
  EXPECT_EQ(held->Local(), v4);
  EXPECT_EQ(held->ForNode(Foreign(1)), foreign);
  EXPECT_EQ(f.cache->Get(Cacheable(), "1"), v6);

  // A local put into an entry that held only a foreign snapshot reports no old one.
  EXPECT_TRUE(f.cache->Put(Make("2", 20, Foreign(1)), "2").SnapshotChanged());
  const Ref<Message> local2 = Make("2", 2);
  change = f.cache->Put(local2, "2");
  EXPECT_EQ(change.old_snapshot, nullptr);
  EXPECT_EQ(change.new_snapshot, local2);
  EXPECT_EQ(f.cache->Get(Cacheable(), "2"), local2);

  // A clear reports the snapshot the last update in place stored.
  change = f.cache->Clear(Cacheable(), "1", NodeId::Local());
  EXPECT_EQ(change.old_snapshot, v6);
  EXPECT_EQ(change.new_snapshot, nullptr);
  EXPECT_EQ(f.cache->Get(Cacheable(), "1"), nullptr);
  EXPECT_EQ(f.cache->Stats().puts, 9u);
}

// Entries come and go (the tables grow and are rebuilt past their tombstones): every get sees
// what the last write left.
TEST(Cache, CA10_TablesGrowAndShrinkUnderInsertsAndClears) {
  auto cache = Cache::Create(&CacheableId);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 3000; ++i)
      cache->Put(Make(std::to_string(i), i + round), std::to_string(i));
    EXPECT_EQ(cache->Size(), 3000u);
    for (int i = 0; i < 3000; i += 2) cache->Clear(Cacheable(), std::to_string(i), NodeId::Local());
    EXPECT_EQ(cache->Size(), 1500u);
    for (int i = 0; i < 3000; ++i) {
      const Ref<Message> m = cache->Get(Cacheable(), std::to_string(i));
      if (i % 2 == 0) {
        EXPECT_EQ(m, nullptr) << i;
      } else {
        EXPECT_EQ(ValueOf(m), i + round) << i;
      }
    }
    EXPECT_EQ(cache->Dump().size(), 1500u);
  }
}

// The key hash reads ids a word at a time, the tail as one overlapping word: ids of every length
// from empty-but-one to several words, and ids that differ in one byte only (at every position),
// are all kept apart and found again.
TEST(Cache, IdsOfEveryLengthAndEveryDifferingByteAreKeptApart) {
  auto cache = Cache::Create(&CacheableId);
  std::vector<std::string> ids;
  for (std::size_t length = 1; length <= 40; ++length) {
    const std::string base(length, 'a');
    ids.push_back(base);
    for (std::size_t at = 0; at < length; ++at) {
      std::string other = base;
      other[at] = 'b';
      ids.push_back(other);
    }
  }
  ids.push_back("1700000000.1");
  ids.push_back("1700000000.10");
  ids.push_back(std::string("a\0b", 3));
  ids.push_back(std::string("a\0c", 3));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    cache->Put(Make(ids[i], static_cast<int>(i)), ids[i]);
  }
  ASSERT_EQ(cache->Size(), ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(ValueOf(cache->Get(Cacheable(), ids[i])), static_cast<int>(i)) << i;
  }
  EXPECT_EQ(cache->Get(Cacheable(), std::string(41, 'a')), nullptr);
  EXPECT_EQ(cache->Get(Cacheable(), "1700000000.100"), nullptr);
}

// A caching topic's write and a direct Put report the same change (the topic's own path does
// not copy the id into the change, and publishes the same update).
TEST(Cache, CachingTopicUpdatesMatchDirectPuts) {
  Fixture f(DeliveryMode::kSynchronous);
  const Ref<Message> first = Make("7", 1);
  const Ref<Message> second = Make("7", 2);
  f.topic->Publish(first);
  f.topic->Publish(second);
  const std::vector<Ref<Message>> updates = f.Updates();
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(UpdateOf(updates[1]).type, Cacheable().get());
  EXPECT_EQ(UpdateOf(updates[1]).old_snapshot, first);
  EXPECT_EQ(UpdateOf(updates[1]).new_snapshot, second);
  EXPECT_EQ(f.cache->Get(Cacheable(), "7"), second);
  const CacheChange direct = f.cache->Put(Make("7", 3), "7");
  EXPECT_EQ(direct.id, "7");
  EXPECT_EQ(direct.old_snapshot, second);
}

// --- Cache pattern order ---------------------------------------------------------------------

// On "all", the raw message comes before the cache update made from it.
TEST_P(CacheModes, CA09_RawMessageReachesAllBeforeItsUpdate) {
  auto all = CachePatternAll::Create("objects", &CacheableId);
  Recorder recorder = Recorder::IgnoringChanges();
  Subscription sub = Subscription::Create(all->GetTopic(), recorder.Handler(), InMode(GetParam()));
  auto one = CachePatternOne::Create(all, "objects/1");
  const Ref<Message> a = Make("1", 1);
  const Ref<Message> b = Make("1", 2);
  one->GetTopic()->Publish(a);
  one->GetTopic()->Publish(b);
  EXPECT_EQ(all->GetCache()->Get(Cacheable(), "1"), b);
  all->GetTopic()->PublishAndWait(StringType().Make("barrier"), sub);
  std::vector<std::string> seen;
  for (const Ref<Message>& m : recorder.Messages()) {
    if (const CacheUpdate* u = CacheUpdateType().Get(*m)) {
      seen.push_back("update:" + std::to_string(ValueOf(u->new_snapshot)));
    } else if (Cacheable().Get(*m) != nullptr) {
      seen.push_back("raw:" + std::to_string(ValueOf(m)));
    }
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("raw:1", "update:1", "raw:2", "update:2"));
}

// --- The inline path -------------------------------------------------------------------------
// The original topic's fan-out calls its caching topic directly; the caching subscription stays
// on the topic for notices and its final message.

// Each publish reaches the cache once, counted as a delivery like the subscription it stands
// for, before the topic's other synchronous subscribers run.
TEST(Cache, InlineCachingRunsOncePerPublishBeforeOtherSubscribers) {
  auto cache = Cache::Create(&CacheableId);
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  std::vector<Ref<Message>> seen_in_cache;
  Subscription sub = Subscribe(
      topic,
      [&](const Message& m) {
        if (Cacheable().Get(m) != nullptr) seen_in_cache.push_back(cache->Get(Cacheable(), "1"));
      },
      InMode(DeliveryMode::kSynchronous));
  const Ref<Message> a = Make("1", 1);
  const PublishResult result = topic->Publish(a);
  EXPECT_EQ(result.delivered, 2u);
  EXPECT_EQ(topic->Publish(Make("2", 1)).delivered, 2u);
  EXPECT_EQ(caching->Stats().cached, 2u);
  EXPECT_EQ(cache->Stats().puts, 2u);
  ASSERT_EQ(seen_in_cache.size(), 2u);
  EXPECT_EQ(seen_in_cache[0], a);
  EXPECT_EQ(topic->SubscriberCount(), 2u);
}

// Messages forwarded into the original topic are cached as its own are, in publish order.
TEST(Cache, InlineCachingSeesWhatIsForwardedIntoTheOriginal) {
  Fixture f(DeliveryMode::kSynchronous);
  auto child = Topic::Create("child");
  Forward forward = ForwardAll(child, f.topic);
  const Ref<Message> a = Make("1", 1);
  const Ref<Message> b = Make("1", 2);
  child->Publish(a);
  EXPECT_EQ(f.cache->Get(Cacheable(), "1"), a);
  f.topic->Publish(b);
  child->Publish(Make("2", 3));
  EXPECT_EQ(f.cache->Get(Cacheable(), "1"), b);
  f.Barrier();
  const auto updates = f.Updates();
  ASSERT_EQ(updates.size(), 3u);
  EXPECT_EQ(ValueOf(UpdateOf(updates[0]).new_snapshot), 1);
  EXPECT_EQ(UpdateOf(updates[1]).old_snapshot, a);
  EXPECT_EQ(ValueOf(UpdateOf(updates[2]).new_snapshot), 3);
  // A caching topic whose original forwards on: the forward target is not cached.
  forward.Cancel();
  child->Publish(Make("3", 1));
  EXPECT_EQ(f.cache->Get(Cacheable(), "3"), nullptr);
}

// A synchronous subscriber that unsubscribes the caching topic in the middle of a fan-out: that
// publish was cached already (caching runs first), the next ones are not, and the subscription
// still gets its final message.
TEST(Cache, InlineCachingStopsWhenUnsubscribedDuringAPublish) {
  auto cache = Cache::Create(&CacheableId);
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  Subscription sub = Subscribe(
      topic,
      [&](const Message& m) {
        const Item* item = Cacheable().Get(m);
        if (item != nullptr && item->value == 2) caching->Unsubscribe();
      },
      InMode(DeliveryMode::kSynchronous));
  topic->Publish(Make("1", 1));
  topic->Publish(Make("1", 2));
  EXPECT_FALSE(caching->IsSubscribed());
  EXPECT_EQ(topic->Publish(Make("1", 3)).delivered, 1u);
  EXPECT_EQ(ValueOf(cache->Get(Cacheable(), "1")), 2);
  EXPECT_EQ(caching->Stats().cached, 2u);
  EXPECT_TRUE(caching->UnsubscribeAndJoin());  // the final message was handled
  EXPECT_EQ(topic->SubscriberCount(), 1u);
}

// An id function that throws on the inline path: the publish goes on to the other subscribers
// and the next publish is cached.
TEST(Cache, InlineCachingSurvivesAThrowingIdFunction) {
  LogCapture capture;
  auto cache = Cache::Create([](const Message& m) -> std::string {
    const Item* item = Cacheable().Get(m);
    if (item != nullptr && item->value < 0) throw std::runtime_error("no id today");
    return CacheableId(m);
  });
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  Recorder recorder = Recorder::IgnoringChanges();
  Subscription sub =
      Subscription::Create(topic, recorder.Handler(), InMode(DeliveryMode::kSynchronous));
  EXPECT_EQ(topic->Publish(Make("1", -1)).delivered, 2u);
  EXPECT_EQ(recorder.Count(), 1u);
  EXPECT_EQ(cache->Get(Cacheable(), "1"), nullptr);
  const Ref<Message> good = Make("1", 1);
  topic->Publish(good);
  EXPECT_EQ(cache->Get(Cacheable(), "1"), good);
  EXPECT_EQ(caching->Stats().id_failures, 1u);
  EXPECT_THAT(capture.Text(), HasSubstr("no id today"));
}

// --- Census ----------------------------------------------------------------------------------

// A census counts entries, snapshots by type and by node, and aggregates, and holds no entry: a
// write after it is still made in place. A write after DumpEntries (which holds every entry it
// hands out) copies its entry, once, and the cache counts it.
TEST(Cache, CensusCountsWithoutHoldingEntries) {
  auto cache = Cache::Create(&CacheableId);
  cache->Put(Make("x", 1), "x");
  cache->Put(Make("x", 2, Foreign(1)), "x");
  cache->Put(Make("y", 3, Foreign(1)), "y");
  cache->Put(Make("y", 4, Foreign(2)), "y");
  cache->Put(Message::Create(NonCacheable().get(), Item{"z", 5}, NodeId::Local()), "z");

  const CacheCensus census = cache->Census();
  ASSERT_EQ(census.types.size(), 2u);  // by name
  EXPECT_EQ(census.types[0].type, "Cacheable");
  EXPECT_EQ(census.types[0].entries, 2u);
  EXPECT_EQ(census.types[0].local, 1u);
  EXPECT_EQ(census.types[0].foreign, 3u);
  EXPECT_EQ(census.types[0].aggregates, 0u);
  EXPECT_EQ(census.types[1].type, "NonCacheable");
  EXPECT_EQ(census.types[1].entries, 1u);
  EXPECT_EQ(census.types[1].local, 1u);
  EXPECT_EQ(census.aggregates, 0u);
  ASSERT_EQ(census.nodes.size(), 3u);  // local first, then by id
  EXPECT_TRUE(census.nodes[0].local);
  EXPECT_EQ(census.nodes[0].snapshots, 2u);
  EXPECT_EQ(census.nodes[1].node, Foreign(1));
  EXPECT_EQ(census.nodes[1].snapshots, 2u);
  EXPECT_EQ(census.nodes[2].node, Foreign(2));
  EXPECT_EQ(census.nodes[2].snapshots, 1u);

  cache->Put(Make("x", 6), "x");
  EXPECT_EQ(cache->Stats().held_entry_copies, 0u);
  EXPECT_EQ(cache->DumpEntries(Cacheable().get()).size(), 2u);
  cache->Put(Make("x", 7), "x");  // held by the dump: copied
  cache->Put(Make("x", 8), "x");  // the copy is nobody's: in place
  EXPECT_EQ(cache->Stats().held_entry_copies, 1u);
  EXPECT_EQ(ValueOf(cache->Get(Cacheable(), "x")), 8);
}

TEST(Cache, CensusOfAnAggregatingCacheCountsItsAggregates) {
  auto sum = [](const CacheEntry& entry, const Ref<Message>&) -> Ref<Message> {
    int total = 0;
    for (const Ref<Message>& m : entry.All()) total += ValueOf(m);
    return Message::Create(&entry.Type(), Item{entry.Id(), total}, NodeId::None());
  };
  auto cache = Cache::Create(&CacheableId, sum, nullptr);
  cache->Put(Make("x", 1), "x");
  cache->Put(Make("x", 2, Foreign(1)), "x");
  cache->Put(Make("y", 3, Foreign(1)), "y");
  const CacheCensus census = cache->Census();
  EXPECT_EQ(census.aggregates, 2u);
  ASSERT_EQ(census.types.size(), 1u);
  EXPECT_EQ(census.types[0].aggregates, 2u);
  EXPECT_EQ(census.types[0].entries, 2u);
  EXPECT_EQ(ValueOf(cache->GetByNode(Cacheable(), "x", NodeId::None())), 3);
  // A cache with an aggregate function never writes in place, and counts no copy as a held one.
  cache->Put(Make("x", 4), "x");
  EXPECT_EQ(cache->Stats().held_entry_copies, 0u);
}

// A local snapshot replaced in place while no reader is inside the cache cannot be reached by
// any reader any more: the cache's reference to it passes to the change the write returns, so
// the replaced snapshot goes with the change (here: with the caller's last reference), not a
// few writes later out of the cache's limbo.
TEST(Cache, CA10_AReplacedSnapshotGoesWithTheChangeWhenNoReaderIsInside) {
  auto cache = Cache::Create(&CacheableId);
  const Ref<Message> v1 = Make("1", 1);
  const Ref<Message> v2 = Make("1", 2);
  cache->Put(v1, "1");
  EXPECT_EQ(v1->RefCount(), 2);  // the test's and the entry's
  {
    CacheChange change = cache->Put(v2, "1");
    ASSERT_EQ(change.old_snapshot, v1);
    // The test's and the change's: the cache keeps none.
    EXPECT_EQ(v1->RefCount(), 2);
  }
  EXPECT_EQ(v1->RefCount(), 1);
  EXPECT_EQ(cache->Get(Cacheable(), "1"), v2);

  // Through a caching topic: the update carries the only reference besides the test's.
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  Ref<Message> update;
  Subscription sub = Subscription::Create(
      caching->Output(),
      [&update](const Message& m, bool is_final) {
        if (!is_final && CacheUpdateType().Get(m) != nullptr)
          update = Ref<Message>(const_cast<Message*>(&m));
      },
      InMode(DeliveryMode::kSynchronous));
  const Ref<Message> v3 = Make("1", 3);
  topic->Publish(v3);
  ASSERT_NE(update, nullptr);
  EXPECT_EQ(UpdateOf(update).old_snapshot, v2);
  EXPECT_EQ(v2->RefCount(), 2);  // the test's and the update's
  update.Reset();
  EXPECT_EQ(v2->RefCount(), 1);
  EXPECT_EQ(cache->Get(Cacheable(), "1"), v3);
}

// With more reader threads than a write looks at (EpochDomain::kMaxScannedReaders), a write
// does not look for readers inside the cache: the replaced snapshot is not handed to the change
// but waits in the limbo, and goes once the writes that follow have moved the epoch past it.
TEST(Cache, CA10_WithManyReaderThreadsAReplacedSnapshotWaitsForTheEpoch) {
  using bus_internal::EpochDomain;
  auto cache = Cache::Create(&CacheableId);
  const Ref<Message> v1 = Make("1", 1);
  cache->Put(v1, "1");
  plexus_test::ParkedThreads readers(
      static_cast<int>(EpochDomain::kMaxScannedReaders) + 1,
      [&cache](plexus_test::ParkedThreads&) { EXPECT_NE(cache->Get(Cacheable(), "1"), nullptr); });
  ASSERT_GT(EpochDomain::Get().LiveReaders(), EpochDomain::kMaxScannedReaders);
  {
    CacheChange change = cache->Put(Make("1", 2), "1");
    ASSERT_EQ(change.old_snapshot, v1);
    EXPECT_EQ(v1->RefCount(), 3);  // the test's, the change's and the limbo's
  }
  EXPECT_EQ(v1->RefCount(), 2);
  // The limbo is looked at once per batch of writes as large as the number of reader threads.
  const int bound = 4 * static_cast<int>(EpochDomain::Get().LiveReaders() + 8);
  int writes = 0;
  while (v1->RefCount() > 1 && writes < bound) cache->Put(Make("1", 3 + writes++), "1");
  EXPECT_EQ(v1->RefCount(), 1);
  EXPECT_GT(writes, 1);  // not at the first write: the epoch had to move twice
}

// A probe and a read reach an entry through its first cache line: the entry starts a line, and
// its id (with the characters of an id shorter than 16 bytes inline), the last of the fields a
// probe compares, ends inside it.
TEST(Cache, AnEntryKeepsWhatAProbeReadsInItsFirstLine) {
  auto cache = Cache::Create(&CacheableId);
  cache->Put(Make("1700000000.1234", 1), "1700000000.1234");
  const Ref<const CacheEntry> entry = cache->GetEntry(Cacheable(), "1700000000.1234");
  ASSERT_NE(entry, nullptr);
  const auto start = reinterpret_cast<std::uintptr_t>(entry.get());
  EXPECT_EQ(start % 64, 0u);
  const auto id_end = reinterpret_cast<std::uintptr_t>(&entry->Id()) + sizeof(std::string);
  EXPECT_LE(id_end - start, 64u);
  const auto chars_end = reinterpret_cast<std::uintptr_t>(entry->Id().data()) + 16;
  EXPECT_LE(chars_end - start, 64u);
}

// --- Allocations -----------------------------------------------------------------------------

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// A caching topic with nobody on its output: an update of an existing entry allocates nothing
// (the message comes from the bus's recycled blocks, the id fits a string's inline buffer, the
// replaced entry is reused once no reader can reach it).
TEST(Cache, CachingAnUpdateWithoutReceiversAllocatesNothing) {
  auto cache = Cache::Create(&CacheableId);
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  constexpr int kIds = 256;
  std::vector<std::string> ids;
  for (int i = 0; i < kIds; ++i) ids.push_back("1700000000." + std::to_string(i));
  const auto publish_round = [&](int value) {
    for (int i = 0; i < kIds; ++i) topic->Publish(Cacheable(), Item{ids[i], value});
  };
  // First creations, then enough rounds for the replaced entries to come back for reuse.
  for (int round = 0; round < 50; ++round) publish_round(round);
  const std::uint64_t before = plexus_test::AllocationCount();
  for (int round = 0; round < 20; ++round) publish_round(100 + round);
  EXPECT_EQ(plexus_test::AllocationCount() - before, 0u);
  EXPECT_EQ(ValueOf(cache->Get(Cacheable(), ids[7])), 119);
}

// The view form builds no id either: nothing allocated per update of an existing entry, whatever
// the id's length (these exceed a std::string's inline buffer, which the string form would
// allocate for).
TEST(Cache, CachingAnUpdateWithAViewIdFunctionAllocatesNothing) {
  auto cache = Cache::Create(&CacheableIdView);
  auto topic = Topic::Create("SomeTopic");
  auto caching = CachingTopic::Create(topic, cache);
  constexpr int kIds = 256;
  std::vector<std::string> ids;
  for (int i = 0; i < kIds; ++i)
    ids.push_back("PJSIP/some-long-endpoint-name-" + std::to_string(i));
  std::vector<Ref<Message>> messages;
  const auto make_round = [&](int value) {
    messages.clear();
    for (int i = 0; i < kIds; ++i) messages.push_back(Make(ids[i], value));
  };
  for (int round = 0; round < 50; ++round) {
    make_round(round);
    for (const Ref<Message>& m : messages) topic->Publish(m);
  }
  make_round(100);
  const std::uint64_t before = plexus_test::AllocationCount();
  for (const Ref<Message>& m : messages) topic->Publish(m);
  EXPECT_EQ(plexus_test::AllocationCount() - before, 0u);
  EXPECT_EQ(ValueOf(cache->Get(Cacheable(), ids[7])), 100);
}
#endif

}  // namespace
}  // namespace plexus
