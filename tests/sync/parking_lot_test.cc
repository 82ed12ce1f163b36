#include "plexus/sync/internal/parking_lot.h"

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "plexus/core/config.h"

// The parking lot is where every contended GroupLock waiter sleeps: a std::atomic<uint32_t>
// sequence per slot, slept on with std::atomic::wait and woken with notify_all. A wake-up
// lost by that primitive would leave a waiter asleep for good, so these tests are built to
// hang (and be stopped by the ctest timeout) if one ever is: each round needs exactly the
// thread that was just woken to make progress, and nothing else would ever wake it.

namespace plexus::sync_internal {
namespace {

// Every pass is a wake-up through the kernel; the sanitizers slow each one, and on a loaded
// two-core machine ASan's full count runs into the test timeout without any wake-up being lost.
constexpr int Scaled(int n) {
  return kSanitizeThread ? n / 20 : kSanitizeAddress ? n / 4 : n;
}

// The waiter's side of the protocol, as GroupLock::LockOwnAsWaiter uses it: read the ticket,
// re-check the condition, sleep only if the ticket is still current.
template <class Condition>
void ParkUntil(ParkingSlot& slot, Condition condition) {
  for (;;) {
    const std::uint32_t ticket = slot.sequence.load(std::memory_order_acquire);
    if (condition()) return;
    slot.sequence.wait(ticket, std::memory_order_acquire);
  }
}

// A baton passed round a ring of threads that all sleep on one slot: each pass wakes every
// sleeper and exactly one of them may go on. With more threads than cores almost every wait
// really sleeps in the kernel, which is where a lost wake-up would show.
void PassBatonRound(int threads, int passes, bool one_slot) {
  SCOPED_TRACE(std::to_string(threads) + " threads, " +
               (one_slot ? "one shared slot" : "a slot each"));
  std::atomic<int> turn{0};
  std::atomic<int> passed{0};
  // Distinct objects whose addresses pick the slots, as group locks' addresses do.
  struct alignas(kCacheLineSize) Object {
    char byte;
  };
  std::vector<Object> objects(static_cast<std::size_t>(threads) * 64);
  const auto slot_of = [&](int i) -> ParkingSlot& {
    return ParkingSlotFor(one_slot ? &objects[0] : &objects[static_cast<std::size_t>(i) * 64]);
  };
  std::vector<std::thread> ring;
  for (int i = 0; i < threads; ++i) {
    ring.emplace_back([&, i] {
      for (;;) {
        ParkUntil(slot_of(i), [&] {
          const int t = turn.load(std::memory_order_acquire);
          return t % threads == i || t >= passes;
        });
        const int t = turn.load(std::memory_order_relaxed);
        if (t >= passes) return;
        passed.fetch_add(1, std::memory_order_relaxed);
        turn.store(t + 1, std::memory_order_release);
        const int next = (i + 1) % threads;
        UnparkAll(slot_of(next));
        if (t + 1 >= passes) {
          for (int j = 0; j < threads; ++j) UnparkAll(slot_of(j));
        }
      }
    });
  }
  for (std::thread& t : ring) t.join();
  EXPECT_EQ(passed.load(), passes);
}

TEST(ParkingLot, NoWakeUpIsLostWhenManyThreadsShareOneSlot) {
  PassBatonRound(8, Scaled(200000), /*one_slot=*/true);
}

TEST(ParkingLot, NoWakeUpIsLostWithOneSlotPerThread) {
  PassBatonRound(8, Scaled(200000), /*one_slot=*/false);
}

TEST(ParkingLot, NoWakeUpIsLostBetweenTwoThreads) {
  PassBatonRound(2, Scaled(200000), /*one_slot=*/true);
}

}  // namespace
}  // namespace plexus::sync_internal
