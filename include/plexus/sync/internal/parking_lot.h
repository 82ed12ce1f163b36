// Internal: a global table of futex words that threads sleep on while waiting for a lock
// word that lives inside an object which may be freed by the thread that wakes them.
//
// Waking through the object's own memory would touch it after the waker's unlock made it
// eligible for destruction; the table is never freed, so a wake is always safe. Objects hash
// onto one of kSlots words; a wake wakes every sleeper of that slot, and sleepers re-check
// their own condition, so a collision costs a spurious wake-up, never a lost one.
#pragma once

#include <atomic>
#include <cstdint>

#include "plexus/core/config.h"

#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define PLEXUS_HAS_LIBC_SINGLE_THREADED 1
#endif

namespace plexus::sync_internal {

// True while the process has never had a second thread (glibc clears the flag when the first
// thread is created, before that thread runs, and never sets it again). Lock words may then
// be updated with plain stores: nobody else can look at them.
inline bool ProcessIsSingleThreaded() noexcept {
#if defined(PLEXUS_HAS_LIBC_SINGLE_THREADED)
  return __libc_single_threaded != 0;
#else
  return false;
#endif
}

struct alignas(kCacheLineSize) ParkingSlot {
  std::atomic<std::uint32_t> sequence{0};
};

inline constexpr std::size_t kParkingSlots = 256;
extern ParkingSlot g_parking_lot[kParkingSlots];

inline ParkingSlot& ParkingSlotFor(const void* object) noexcept {
  const auto bits = reinterpret_cast<std::uintptr_t>(object);
  return g_parking_lot[(bits >> 6 ^ bits >> 14) % kParkingSlots];
}

// Usage by a waiter:
//   const std::uint32_t ticket = slot.sequence.load(std::memory_order_acquire);
//   if (!condition_satisfied()) slot.sequence.wait(ticket, std::memory_order_acquire);
// and by a waker, after making the condition true:
//   UnparkAll(slot);
inline void UnparkAll(ParkingSlot& slot) noexcept {
  slot.sequence.fetch_add(1, std::memory_order_release);
  slot.sequence.notify_all();
}

}  // namespace plexus::sync_internal
