// FlagPair: a run sees the flag or the rare side waits for the run, never neither; Raise waits
// for a run that was on; Store lowers the flag without waiting.

#include "plexus/sync/internal/flag_pair.h"

#include <atomic>
#include <cstdint>
#include <thread>

#include "gtest/gtest.h"
#include "plexus/sync/cond_var.h"
#include "plexus/sync/mutex.h"

namespace plexus::sync_internal {
namespace {

struct Owner {
  Mutex mu;
  CondVar cv;
  FlagPair<std::uint64_t> pair{mu, cv};
};

TEST(FlagPair, StartsLoweredAndARunSeesWhatWasStored) {
  Owner o;
  EXPECT_EQ(o.pair.Load(), 0u);
  EXPECT_EQ(o.pair.Enter(), 0u);
  o.pair.Exit();
  o.pair.Raise(7);  // no run on: returns at once
  EXPECT_EQ(o.pair.Load(), 7u);
  EXPECT_EQ(o.pair.Enter(), 7u);
  o.pair.Exit();
  o.pair.Store(0);
  EXPECT_EQ(o.pair.Load(std::memory_order_relaxed), 0u);
  EXPECT_EQ(o.pair.Enter(), 0u);
  o.pair.Exit();
}

TEST(FlagPair, RaiseWaitsForTheRunThatWasOn) {
  Owner o;
  EXPECT_EQ(o.pair.Enter(), 0u);  // a run is on, and has missed the flag
  std::atomic<bool> raised{false};
  std::thread rare([&] {
    o.pair.Raise(1);
    raised.store(true);
  });
  EXPECT_FALSE(raised.load());  // Raise cannot return before the run ends
  o.pair.Exit();
  rare.join();
  EXPECT_TRUE(raised.load());
}

// The frequent side writes plain data only in runs that saw the flag lowered; the rare side
// writes it between Raise and Store. If a run could miss the flag while Raise saw no run, the
// two would write at once: ThreadSanitizer reports it, and the counts stop adding up.
TEST(FlagPair, StressARunNeverOverlapsTheRaisedFlag) {
  Owner o;
  constexpr int kRuns = 200000;
  constexpr int kRaises = 2000;
  std::uint64_t data = 0;  // plain: the handshake is all that orders the two sides
  std::atomic<bool> done{false};
  std::uint64_t runs_that_wrote = 0;
  std::thread frequent([&] {
    for (int i = 0; i < kRuns; ++i) {
      if (o.pair.Enter() == 0) {
        ++data;
        ++runs_that_wrote;
      }
      o.pair.Exit();
    }
    done.store(true);
  });
  std::uint64_t rare_writes = 0;
  for (int i = 0; i < kRaises || !done.load(); ++i) {
    o.pair.Raise(1);
    data += 1000000;
    ++rare_writes;
    o.pair.Store(0);
  }
  frequent.join();
  EXPECT_EQ(data, runs_that_wrote + rare_writes * 1000000);
}

}  // namespace
}  // namespace plexus::sync_internal
