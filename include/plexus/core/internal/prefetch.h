// Internal: a prefetch of a cache line the caller is about to write.
#pragma once

namespace plexus::core_internal {

// Asks for the line holding `p` in a state that can be written at once. On x86-64 this is
// PREFETCHW, which takes the line exclusive: __builtin_prefetch(p, 1) compiles to it only
// when the target names the PRFCHW extension (-mprfchw, -march=broadwell and later), and to a
// read prefetch otherwise. A read prefetch of a line another core wrote last leaves it shared,
// and the store that follows still waits for the other core to let it go: the very miss the
// prefetch was for. Processors without PREFETCHW (Intel before Broadwell) decode it as a
// no-op.
inline void PrefetchForWrite(const void* p) noexcept {
#if defined(__x86_64__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

}  // namespace plexus::core_internal
