// Topic::Publish(Ref<Message>&&): the publish takes over the caller's reference and hands it to
// the last queue it fills; the queues' other references are taken together (message_refs.h).
// Checked here: the message lives exactly until the last subscriber ran, whatever mix of
// delivery modes, filters and forwards it meets; a message nobody hears is freed at once;
// reference debugging still names each holder; a fan-out that fails part way (a queue segment
// that cannot be allocated) gives every reference back; and rvalue publishes racing
// unsubscribes free every message once.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/misuse.h"
#include "plexus/core/ref_debug.h"

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define PLEXUS_TEST_ALLOCATION_FAILURES 1
namespace plexus_test {
// The global operator new of this binary (cache_test.cc) fails the calling thread's next
// allocation of `size` bytes with std::bad_alloc; 0 disarms it.
void FailNextAllocationOfSize(std::size_t size);
// The calling thread's calls of the global operator new so far (cache_test.cc).
std::uint64_t AllocationCount();
}  // namespace plexus_test
#endif

namespace plexus {
namespace {

using plexus_test::BusScaled;
using plexus_test::Gate;
using plexus_test::InMode;
using plexus_test::IntType;
using plexus_test::LogCapture;
using plexus_test::ScopedRefDebugging;

// A payload that counts its destruction: the message holding it is freed exactly when the
// count moves (the payload lives inside the message).
struct Tracked {
  explicit Tracked(std::shared_ptr<std::atomic<int>> counter) : destroyed(std::move(counter)) {}
  Tracked(Tracked&&) noexcept = default;
  Tracked& operator=(Tracked&&) noexcept = default;
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  ~Tracked() {
    if (destroyed != nullptr) destroyed->fetch_add(1);
  }
  std::shared_ptr<std::atomic<int>> destroyed;
};

const TypedMessageType<Tracked>& TrackedType() {
  static const auto type = TypedMessageType<Tracked>::Create("BusTest.Tracked");
  return type;
}

// A subscription whose callback blocks on `gate` for every tracked message.
Subscription Blocking(const Ref<Topic>& topic, const Gate& gate, DeliveryMode mode) {
  return Subscribe(
      topic,
      [waiter = gate.waiter()](const Message& m) {
        if (TrackedType().Get(m) != nullptr) waiter.Wait();
      },
      InMode(mode));
}

// A subscription that only counts the tracked messages it receives.
Subscription Counting(const Ref<Topic>& topic, std::shared_ptr<std::atomic<int>> count,
                      DeliveryMode mode) {
  return Subscribe(
      topic,
      [count = std::move(count)](const Message& m) {
        if (TrackedType().Get(m) != nullptr) count->fetch_add(1);
      },
      InMode(mode));
}

TEST(PublishHandoff, TheMessageGoesOnceEverySubscriberRan) {
  Ref<Topic> topic = Topic::Create("handoff-modes");
  Gate gate;
  auto sync_count = std::make_shared<std::atomic<int>>(0);
  Subscription pool = Blocking(topic, gate, DeliveryMode::kPool);
  Subscription dedicated = Blocking(topic, gate, DeliveryMode::kDedicatedThread);
  Subscription synchronous = Counting(topic, sync_count, DeliveryMode::kSynchronous);
  SubscriptionOptions ints_only;
  ints_only.accepted_types.push_back(IntType().get());
  Subscription filtered = Subscribe(
      topic, [](const Message&) {}, ints_only);

  auto destroyed = std::make_shared<std::atomic<int>>(0);
  Ref<Message> message = TrackedType().Make(Tracked(destroyed));
  const Message* raw = message.get();
  const PublishResult result = topic->Publish(std::move(message));
  EXPECT_EQ(message, nullptr);
  EXPECT_EQ(result.delivered, 3u);
  EXPECT_EQ(result.filtered, 1u);
  EXPECT_EQ(sync_count->load(), 1);

  // Both queued callbacks are running: each holds one reference, the publisher none.
  ASSERT_TRUE(gate.WaitForArrivals(2));
  EXPECT_EQ(raw->RefCount(), 2);
  EXPECT_EQ(destroyed->load(), 0);

  gate.Open();
  ASSERT_TRUE(pool.UnsubscribeAndJoin());
  ASSERT_TRUE(dedicated.UnsubscribeAndJoin());
  ASSERT_TRUE(synchronous.UnsubscribeAndJoin());
  ASSERT_TRUE(filtered.UnsubscribeAndJoin());
  EXPECT_EQ(destroyed->load(), 1);
}

// The const& overload leaves the caller's reference alone and takes the queues' own.
TEST(PublishHandoff, APublishOfAKeptMessageLeavesTheCallersReference) {
  Ref<Topic> topic = Topic::Create("handoff-kept");
  Gate gate;
  std::vector<Subscription> subs;
  // Dedicated threads: three callbacks block at once, which a small shared pool cannot run.
  for (int i = 0; i < 3; ++i) subs.push_back(Blocking(topic, gate, DeliveryMode::kDedicatedThread));

  auto destroyed = std::make_shared<std::atomic<int>>(0);
  const Ref<Message> message = TrackedType().Make(Tracked(destroyed));
  EXPECT_EQ(topic->Publish(message).delivered, 3u);
  ASSERT_NE(message, nullptr);
  ASSERT_TRUE(gate.WaitForArrivals(3));
  EXPECT_EQ(message->RefCount(), 4);

  gate.Open();
  for (Subscription& s : subs) ASSERT_TRUE(s.UnsubscribeAndJoin());
  EXPECT_EQ(message->RefCount(), 1);
  EXPECT_EQ(destroyed->load(), 0);
}

TEST(PublishHandoff, AMessageNobodyHearsIsFreedAtOnceAndCounted) {
  Ref<Topic> topic = Topic::Create("handoff-unheard");
  auto destroyed = std::make_shared<std::atomic<int>>(0);
  Ref<Message> message = TrackedType().Make(Tracked(destroyed));
  const PublishResult result = topic->Publish(std::move(message));
  EXPECT_EQ(message, nullptr);
  EXPECT_EQ(result.delivered, 0u);
  EXPECT_EQ(destroyed->load(), 1);

  // Published counts what was heard (under the topic's lock) and what was not, together.
  EXPECT_EQ(topic->Stats().published, 1u);
  topic->Publish(IntType(), 1);
  EXPECT_EQ(topic->Stats().published, 2u);
  auto count = std::make_shared<std::atomic<int>>(0);
  Subscription sub = Counting(topic, count, DeliveryMode::kSynchronous);
  const std::uint64_t before = topic->Stats().published;
  topic->Publish(TrackedType().Make(Tracked(destroyed)));
  EXPECT_EQ(count->load(), 1);
  EXPECT_EQ(destroyed->load(), 2);
  EXPECT_EQ(topic->Stats().published, before + 1);
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
}

// Forwards: the publish keeps a reference of its own while topics are left to visit, so the
// queues of the first topics may run (and drop theirs) before the walk ends.
TEST(PublishHandoff, ThroughForwardsTheMessageOutlivesTheWalk) {
  Ref<Topic> a = Topic::Create("handoff-a");
  Ref<Topic> b = Topic::Create("handoff-b");
  Ref<Topic> c = Topic::Create("handoff-c");
  Forward a_b = ForwardAll(a, b);
  Forward a_c = ForwardAll(a, c);
  Forward b_c = ForwardAll(b, c);  // a diamond: c is reached once
  auto count = std::make_shared<std::atomic<int>>(0);
  Subscription on_a = Counting(a, count, DeliveryMode::kPool);
  Subscription on_b = Counting(b, count, DeliveryMode::kDedicatedThread);
  Subscription on_c = Counting(c, count, DeliveryMode::kPool);
  Subscription sync_c = Counting(c, count, DeliveryMode::kSynchronous);

  auto destroyed = std::make_shared<std::atomic<int>>(0);
  constexpr int kMessages = 200;
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(a->Publish(TrackedType().Make(Tracked(destroyed))).delivered, 4u);
  }
  ASSERT_TRUE(on_a.UnsubscribeAndJoin());
  ASSERT_TRUE(on_b.UnsubscribeAndJoin());
  ASSERT_TRUE(on_c.UnsubscribeAndJoin());
  ASSERT_TRUE(sync_c.UnsubscribeAndJoin());
  EXPECT_EQ(count->load(), 4 * kMessages);
  EXPECT_EQ(destroyed->load(), kMessages);
}

TEST(PublishHandoff, ANullMessageIsMisuse) {
  Ref<Topic> topic = Topic::Create("handoff-null");
  LogCapture log;
  EXPECT_THROW(topic->Publish(Ref<Message>()), UsageError);
}

// Reference debugging follows each reference to its holder: the caller's record moves to the
// queue that got it (keeping the line that made the message), and each queue's own is keyed to
// that queue; none is left keyed to the publish.
TEST(PublishHandoff, ReferenceDebuggingNamesEachQueueAsAHolder) {
  Ref<Topic> topic = Topic::Create("handoff-debug");
  Gate gate;
  std::vector<Subscription> subs;
  // First, so that no reference is left over for it: the references a fan-out drops unused are
  // interchangeable records, and the caller's could be among them.
  SubscriptionOptions ints_only;
  ints_only.accepted_types.push_back(IntType().get());
  subs.push_back(Subscribe(
      topic, [](const Message&) {}, ints_only));
  // Dedicated threads: three callbacks block at once, which a small shared pool cannot run.
  for (int i = 0; i < 3; ++i) subs.push_back(Blocking(topic, gate, DeliveryMode::kDedicatedThread));

  ScopedRefDebugging debugging(true);
  auto destroyed = std::make_shared<std::atomic<int>>(0);
  const int made_at = __LINE__ + 1;
  Ref<Message> message = TrackedType().Make(Tracked(destroyed));
  const Message* raw = message.get();
  EXPECT_EQ(topic->Publish(std::move(message)).delivered, 3u);
  ASSERT_TRUE(gate.WaitForArrivals(3));

  const std::vector<RefHolder> holders = RefHoldersOf(raw);
  ASSERT_EQ(holders.size(), 3u);
  std::set<const void*> keys;
  int at_made = 0;
  for (const RefHolder& h : holders) {
    EXPECT_NE(h.key, nullptr);
    keys.insert(h.key);
    if (h.where.line() == static_cast<unsigned>(made_at)) ++at_made;
  }
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_EQ(at_made, 1);

  gate.Open();
  for (Subscription& s : subs) ASSERT_TRUE(s.UnsubscribeAndJoin());
  EXPECT_EQ(destroyed->load(), 1);
}

#ifdef PLEXUS_TEST_ALLOCATION_FAILURES
// A queue whose next segment cannot be allocated makes the publish throw; the fan-out must
// still end: its references given back and its depth lowered (else every later snapshot change
// would be kept for a fan-out that never ends). The forward's target shows the latter: the
// snapshot that held the forward is freed when the forward goes, not kept with the topic.
TEST(PublishHandoff, AFailedQueueAllocationUnwindsTheFanOut) {
  Ref<Topic> topic = Topic::Create("handoff-alloc");
  Ref<Topic> target = Topic::Create("handoff-alloc-target");
  Forward forward = ForwardAll(topic, target);
  auto count = std::make_shared<std::atomic<int>>(0);
  Subscription first = Counting(topic, count, DeliveryMode::kPool);
  Subscription second = Counting(topic, count, DeliveryMode::kPool);
  // Each mailbox holds its subscribe notice in a one-slot first segment: the next message
  // needs a full segment, a block of the publishing thread's message allocator. A thread that
  // never made a message has no slab to carve it from, so its first publish asks the system for
  // one (an over-aligned allocation of 16 KiB, message_allocator.cc): that is what fails here.
  constexpr std::size_t kSlabBytes = 16 * 1024;

  auto destroyed = std::make_shared<std::atomic<int>>(0);
  const Ref<Message> kept = TrackedType().Make(Tracked(destroyed));
  Ref<Message> handed = TrackedType().Make(Tracked(destroyed));
  std::thread publisher([&] {
    plexus_test::FailNextAllocationOfSize(kSlabBytes);
    EXPECT_THROW(topic->Publish(kept), std::bad_alloc);
    EXPECT_EQ(kept->RefCount(), 1);

    plexus_test::FailNextAllocationOfSize(kSlabBytes);
    EXPECT_THROW(topic->Publish(std::move(handed)), std::bad_alloc);
    EXPECT_EQ(handed, nullptr);
    EXPECT_EQ(destroyed->load(), 1);
    plexus_test::FailNextAllocationOfSize(0);  // disarmed, whatever happened above
  });
  publisher.join();

  EXPECT_EQ(target->RefCount(), 3);  // the test's, the forward handle's and the snapshot's
  forward.Cancel();
  EXPECT_EQ(target->RefCount(), 1);

  // The topic still delivers.
  EXPECT_EQ(topic->Publish(TrackedType().Make(Tracked(destroyed))).delivered, 2u);
  ASSERT_TRUE(first.UnsubscribeAndJoin());
  ASSERT_TRUE(second.UnsubscribeAndJoin());
  EXPECT_EQ(destroyed->load(), 2);
}
#endif

#ifdef PLEXUS_TEST_ALLOCATION_FAILURES
// A queue that swings far deeper than its spare segments keep (a subscriber held up while a
// burst comes) takes its extra segments from the message allocator, which the subscriber's
// thread gives them back to: the second burst asks the system for nothing (the first may have
// carved slabs, and slabs are not counted).
TEST(PublishHandoff, AQueueDeeperThanItsSparesAllocatesNothing) {
  Ref<Topic> topic = Topic::Create("handoff-deep");
  constexpr int kBurst = 3000;  // some 250 segments, against 32 spares
  // The subscriber stops at the first message of each burst until that burst's gate opens, so
  // the whole burst queues up behind it.
  Gate gates[2];
  const Gate::Waiter waiters[2] = {gates[0].waiter(), gates[1].waiter()};
  auto count = std::make_shared<std::atomic<int>>(0);
  SubscriptionOptions options = InMode(DeliveryMode::kDedicatedThread);
  // No congestion alert: its log line would be the burst's only allocations.
  options.high_water = 4 * kBurst;
  options.low_water = kBurst;
  Subscription sub = Subscribe(
      topic,
      [count, &waiters](const Message& m) {
        if (TrackedType().Get(m) == nullptr) return;
        const int seen = count->fetch_add(1);
        if (seen % kBurst == 0) waiters[seen / kBurst].Wait();
      },
      std::move(options));
  auto destroyed = std::make_shared<std::atomic<int>>(0);
  std::uint64_t second_burst = 0;
  for (int burst = 0; burst < 2; ++burst) {
    const std::uint64_t allocations = plexus_test::AllocationCount();
    for (int i = 0; i < kBurst; ++i) topic->Publish(TrackedType().Make(Tracked(destroyed)));
    if (burst == 1) second_burst = plexus_test::AllocationCount() - allocations;
    ASSERT_TRUE(plexus_test::WaitUntil([&] { return gates[burst].Arrived() == 1; }));
    EXPECT_GE(sub.Stats().depth, static_cast<std::size_t>(kBurst));
    gates[burst].Open();
    ASSERT_TRUE(plexus_test::WaitUntil([&] { return count->load() == (burst + 1) * kBurst; }));
  }
  EXPECT_EQ(second_burst, 0u);
  ASSERT_TRUE(sub.UnsubscribeAndJoin());
  EXPECT_EQ(destroyed->load(), 2 * kBurst);
}
#endif

// Rvalue publishes from several threads race subscriptions of every mode leaving and joining
// (and a forward coming and going): every message is freed exactly once, and none while a
// subscriber may still run (the sanitizer builds see a use after free).
TEST(PublishHandoffStress, RvaluePublishesRaceUnsubscribe) {
  const int rounds = BusScaled(40);
  auto destroyed = std::make_shared<std::atomic<int>>(0);
  std::atomic<int> made{0};
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE(round);
    Ref<Topic> topic = Topic::Create("handoff-stress");
    Ref<Topic> parent = Topic::Create("handoff-stress-parent");
    auto count = std::make_shared<std::atomic<int>>(0);
    std::vector<Subscription> subs;
    const DeliveryMode modes[] = {DeliveryMode::kPool, DeliveryMode::kDedicatedThread,
                                  DeliveryMode::kSynchronous};
    for (int i = 0; i < 6; ++i) {
      subs.push_back(Counting(i % 2 == 0 ? topic : parent, count, modes[i % 3]));
    }
    Forward forward = ForwardAll(topic, parent);
    std::atomic<bool> stop{false};
    std::vector<std::thread> publishers;
    for (int p = 0; p < 3; ++p) {
      publishers.emplace_back([&] {
        while (!stop.load(std::memory_order_relaxed)) {
          topic->Publish(TrackedType().Make(Tracked(destroyed)));
          made.fetch_add(1);
        }
      });
    }
    // Leave and come back while the publishers run; the forward goes halfway.
    const std::size_t first_subs = subs.size();
    for (std::size_t i = 0; i < first_subs; ++i) {
      ASSERT_TRUE(plexus_test::WaitUntil([&] { return count->load() >= static_cast<int>(i); }));
      subs[i].Unsubscribe();
      if (i == first_subs / 2) forward.Cancel();
      subs.push_back(Counting(i % 2 == 0 ? topic : parent, count, modes[(i + 1) % 3]));
    }
    stop = true;
    for (std::thread& t : publishers) t.join();
    for (Subscription& s : subs) {
      s.Unsubscribe();
      ASSERT_TRUE(s.Join());
    }
    EXPECT_EQ(destroyed->load(), made.load());
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace plexus
