// The epoch domain behind the cache's lock-free reads: reader threads are counted while they
// live, and a writer's look for readers inside a guard sees them, but scans only while few
// threads read.

#include "epoch.h"

#include <cstdint>

#include "bus/bus_test_support.h"
#include "gtest/gtest.h"

namespace plexus::bus_internal {
namespace {

using plexus_test::ParkedThreads;

TEST(Epoch, ReaderThreadsAreCountedWhileTheyLive) {
  const EpochDomain& domain = EpochDomain::Get();
  const std::uint32_t before = domain.LiveReaders();
  {
    ParkedThreads readers(3, [](ParkedThreads&) { EpochGuard guard; });
    EXPECT_EQ(domain.LiveReaders(), before + 3);
    // Nested guards take one slot; threads that never read take none.
    ParkedThreads nested(1, [](ParkedThreads&) {
      EpochGuard outer;
      EpochGuard inner;
    });
    ParkedThreads idle(2, [](ParkedThreads&) {});
    EXPECT_EQ(domain.LiveReaders(), before + 4);
  }
  // The threads exited: their slots are back, for other threads to take.
  EXPECT_EQ(domain.LiveReaders(), before);
  ParkedThreads again(2, [](ParkedThreads&) { EpochGuard guard; });
  EXPECT_EQ(domain.LiveReaders(), before + 2);
}

TEST(Epoch, NoReaderInsideSeesReadersInsideAGuard) {
  const EpochDomain& domain = EpochDomain::Get();
  // Two more slots (the test's thread, one parked inside) keep the domain scanning.
  ASSERT_LE(domain.LiveReaders() + 2, EpochDomain::kMaxScannedReaders);
  { EpochGuard guard; }
  EXPECT_TRUE(domain.NoReaderInside());
  {
    EpochGuard guard;
    EXPECT_FALSE(domain.NoReaderInside());
  }
  EXPECT_TRUE(domain.NoReaderInside());
  {
    ParkedThreads inside(1, [](ParkedThreads& self) {
      EpochGuard guard;
      self.ParkHere();
    });
    EXPECT_FALSE(domain.NoReaderInside());
  }
  EXPECT_TRUE(domain.NoReaderInside());
}

// With more reader threads than it scans, the answer is "maybe" without a look, even though
// every one of them is outside its guard; it is a scan again once they are gone.
TEST(Epoch, NoReaderInsideDoesNotScanManyReaderThreads) {
  const EpochDomain& domain = EpochDomain::Get();
  {
    ParkedThreads readers(static_cast<int>(EpochDomain::kMaxScannedReaders) + 1,
                          [](ParkedThreads&) { EpochGuard guard; });
    ASSERT_GT(domain.LiveReaders(), EpochDomain::kMaxScannedReaders);
    EXPECT_FALSE(domain.NoReaderInside());
  }
  ASSERT_LE(domain.LiveReaders(), EpochDomain::kMaxScannedReaders);
  EXPECT_TRUE(domain.NoReaderInside());
}

// The epoch moves on only when every reader inside a guard has seen the current one, so an
// object stamped while a reader was inside stays unsafe to free until that reader left.
TEST(Epoch, AStampIsSafeToFreeOnlyOnceEveryReaderThatMightHoldItLeft) {
  EpochDomain& domain = EpochDomain::Get();
  std::uint64_t stamp = 0;
  {
    ParkedThreads inside(1, [&](ParkedThreads& self) {
      EpochGuard guard;
      self.ParkHere();
    });
    stamp = domain.Current();
    for (int i = 0; i < 4; ++i) EXPECT_FALSE(domain.SafeToFree(stamp));
  }
  // The reader left: one more step of the epoch is enough.
  EXPECT_TRUE(domain.SafeToFree(stamp));
}

}  // namespace
}  // namespace plexus::bus_internal
