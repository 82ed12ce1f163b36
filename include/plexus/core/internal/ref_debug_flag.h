// Internal: the global switch read on every reference operation. Not part of the API.
#pragma once

#include <atomic>

#include "plexus/core/config.h"

namespace plexus::core_internal {

// Relaxed loads are enough: a reference operation racing with the switch may or may not be
// recorded, which the documentation allows.
extern std::atomic<bool> g_ref_debug_on;
// Set once debugging has ever been on, so that objects destroyed later are removed from the
// tables even after it was switched off again.
extern std::atomic<bool> g_ref_debug_ever;

inline bool RefDebugOn() noexcept {
  return PLEXUS_UNLIKELY(g_ref_debug_on.load(std::memory_order_relaxed));
}
inline bool RefDebugEver() noexcept {
  return PLEXUS_UNLIKELY(g_ref_debug_ever.load(std::memory_order_relaxed));
}

}  // namespace plexus::core_internal
