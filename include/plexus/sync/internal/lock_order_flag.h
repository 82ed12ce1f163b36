// Internal: the global validation switch, read inline by every validated lock. Not API.
#pragma once

#include <atomic>

#include "plexus/core/config.h"

namespace plexus::sync_internal {

// Whether validation is on now: acquisitions validate and push only while it is.
extern std::atomic<bool> g_lock_order_on;
// Whether validation has ever been on in this process (set once, never cleared). Releases
// test it rather than g_lock_order_on, so that a lock pushed while validation was on is
// still popped after it is switched off; a process that never validates skips the pop.
extern std::atomic<bool> g_lock_order_ever;

inline bool LockOrderOn() noexcept {
  return PLEXUS_UNLIKELY(g_lock_order_on.load(std::memory_order_relaxed));
}
inline bool LockOrderEver() noexcept {
  return PLEXUS_UNLIKELY(g_lock_order_ever.load(std::memory_order_relaxed));
}

}  // namespace plexus::sync_internal
