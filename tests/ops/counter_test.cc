// plexus::ops::Counter: a program's own named count, listed while it lives.

#include "plexus/ops/counter.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "core/test_support.h"
#include "gtest/gtest.h"

namespace plexus::ops {
namespace {

const CounterStats* Listed(const std::vector<CounterStats>& list, const std::string& name) {
  const auto it =
      std::find_if(list.begin(), list.end(), [&](const CounterStats& c) { return c.name == name; });
  return it == list.end() ? nullptr : &*it;
}

TEST(Counter, CountsAndIsListedWhileItLives) {
  {
    Counter c("counter_test.calls", "calls set up");
    EXPECT_EQ(c.Value(), 0u);
    c.Add();
    c.Add(9);
    EXPECT_EQ(c.Value(), 10u);
    const std::vector<CounterStats> list = ListCounters();
    const CounterStats* listed = Listed(list, "counter_test.calls");
    ASSERT_NE(listed, nullptr);
    EXPECT_EQ(listed->value, 10u);
    EXPECT_EQ(listed->help, "calls set up");
  }
  EXPECT_EQ(Listed(ListCounters(), "counter_test.calls"), nullptr);
}

TEST(Counter, TheListingIsSortedByName) {
  Counter b("counter_test.b");
  Counter a("counter_test.a");
  const std::vector<CounterStats> list = ListCounters();
  EXPECT_TRUE(
      std::is_sorted(list.begin(), list.end(),
                     [](const CounterStats& x, const CounterStats& y) { return x.name < y.name; }));
  EXPECT_NE(Listed(list, "counter_test.a"), nullptr);
  EXPECT_NE(Listed(list, "counter_test.b"), nullptr);
}

TEST(Counter, ANameInUseIsMisuseAndTheSecondCounterIsNotListed) {
  Counter first("counter_test.twice");
  first.Add(3);
  std::unique_ptr<Counter> second;
  PLEXUS_EXPECT_MISUSE_HERE(second.reset(new Counter("counter_test.twice")));
  // With the default misuse action (report and go on) the second one is made, counts, and
  // leaves the listing to the first.
  plexus_test::ScopedMisuseAction quiet(MisuseAction::kLog);
  Counter third("counter_test.twice");
  third.Add(100);
  EXPECT_EQ(third.Value(), 100u);
  EXPECT_EQ(Listed(ListCounters(), "counter_test.twice")->value, 3u);
}

// Adds race the listing and other counters coming and going; every add is counted.
TEST(Counter, ConcurrentAddsAndListingsAreExact) {
  Counter c("counter_test.race");
  constexpr int kThreads = 4;
  constexpr int kAdds = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kAdds; ++i) c.Add();
    });
  }
  threads.emplace_back([] {
    for (int i = 0; i < 200; ++i) {
      Counter passing("counter_test.passing");
      passing.Add();
      (void)ListCounters();
    }
  });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(c.Value(), std::uint64_t{kThreads} * kAdds);
  EXPECT_EQ(Listed(ListCounters(), "counter_test.race")->value, std::uint64_t{kThreads} * kAdds);
}

}  // namespace
}  // namespace plexus::ops
