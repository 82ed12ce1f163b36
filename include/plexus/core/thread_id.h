// -----------------------------------------------------------------------------
// plexus/core/thread_id.h
// -----------------------------------------------------------------------------
//
// A cheap per-thread identity. CurrentThreadToken() is the address of a thread_local, so it
// costs one TLS address computation (no call into the C library, unlike pthread_self() or
// std::this_thread::get_id()) and is never 0. Locks store it to know their owner.
//
// Thread safety: thread-safe.

#pragma once

#include <cstdint>

namespace plexus {

namespace core_internal {
inline thread_local char thread_token_anchor = 0;
}  // namespace core_internal

using ThreadToken = std::uintptr_t;

inline ThreadToken CurrentThreadToken() noexcept {
  return reinterpret_cast<ThreadToken>(&core_internal::thread_token_anchor);
}

// A small, stable number for the current thread (1, 2, 3, ... in order of first call), for
// reports that a person reads.
std::uint32_t CurrentThreadNumber() noexcept;

}  // namespace plexus
