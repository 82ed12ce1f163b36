// Internal: the pause a spin-wait loop issues between polls, so that a spinning thread yields
// the core's shared resources to its sibling hyper-thread and leaves the cache line alone.
#pragma once

namespace plexus::core_internal {

inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace plexus::core_internal
