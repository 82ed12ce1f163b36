// Internal: the global validation switch, read inline by every validated lock. Not API.
#pragma once

#include <atomic>

#include "plexus/core/config.h"

namespace plexus::sync_internal {

extern std::atomic<bool> g_lock_order_on;
// Number of locks currently on any thread's held stack; lets release skip the pop when
// validation was never on.
extern std::atomic<bool> g_lock_order_ever;

inline bool LockOrderOn() noexcept {
  return PLEXUS_UNLIKELY(g_lock_order_on.load(std::memory_order_relaxed));
}
inline bool LockOrderEver() noexcept {
  return PLEXUS_UNLIKELY(g_lock_order_ever.load(std::memory_order_relaxed));
}

}  // namespace plexus::sync_internal
