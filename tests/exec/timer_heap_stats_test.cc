// TimerHeap::Stats and ListTimerHeaps: a heap's counters as an operator's console shows them,
// every live heap listed, and a heap leaving the listing when it is freed.

#include <algorithm>
#include <chrono>
#include <future>
#include <string>

#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/exec/timer_heap.h"

namespace plexus {
namespace {

bool Listed(std::uint64_t id) {
  const std::vector<TimerHeapStats> heaps = ListTimerHeaps();
  return std::any_of(heaps.begin(), heaps.end(), [&](const auto& h) { return h.id == id; });
}

TEST(TimerHeapStats, CountsScheduledFiredAndPending) {
  Ref<TimerHeap> heap = TimerHeap::Create("stats.heap");
  TimerHeapStats s = heap->Stats();
  EXPECT_EQ(s.name, "stats.heap");
  EXPECT_NE(s.id, 0u);
  EXPECT_EQ(s.scheduled, 0u);
  EXPECT_EQ(s.pending, 0u);
  EXPECT_EQ(s.next_due_in, std::chrono::nanoseconds(0));

  std::promise<void> fired;
  heap->Schedule(std::chrono::nanoseconds(0), [&] { fired.set_value(); });
  const TimerId later = heap->Schedule(std::chrono::hours(1), [] {});
  fired.get_future().wait();
  ASSERT_TRUE(plexus_test::WaitUntil([&] { return heap->Stats().fired == 1; }));
  s = heap->Stats();
  EXPECT_EQ(s.scheduled, 2u);
  EXPECT_EQ(s.pending, 1u);
  EXPECT_GT(s.next_due_in, std::chrono::minutes(59));
  // Rescheduling moves a timer; it schedules nothing new.
  EXPECT_TRUE(heap->Reschedule(later, std::chrono::hours(2)));
  EXPECT_EQ(heap->Stats().scheduled, 2u);
  EXPECT_TRUE(heap->Cancel(later));
  EXPECT_EQ(heap->Stats().pending, 0u);
  EXPECT_EQ(heap->Stats().fired, 1u);
}

TEST(TimerHeapStats, ListsEveryLiveHeapUntilItIsFreed) {
  Ref<TimerHeap> a = TimerHeap::Create("stats.a");
  Ref<TimerHeap> b = TimerHeap::Create("stats.a");  // names need not be unique; ids are
  const std::uint64_t id_a = a->Stats().id;
  const std::uint64_t id_b = b->Stats().id;
  EXPECT_NE(id_a, id_b);
  EXPECT_TRUE(Listed(id_a));
  EXPECT_TRUE(Listed(id_b));
  a.Reset();
  EXPECT_FALSE(Listed(id_a));
  EXPECT_TRUE(Listed(id_b));
}

TEST(TimerHeapStats, ListingRacesTheLastReference) {
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load()) {
      Ref<TimerHeap> heap = TimerHeap::Create("stats.churn");
      heap->Schedule(std::chrono::hours(1), [] {});
    }
  });
  for (int i = 0; i < 200; ++i) (void)ListTimerHeaps();
  stop.store(true);
  churn.join();
}

}  // namespace
}  // namespace plexus
