// -----------------------------------------------------------------------------
// plexus/core/config.h
// -----------------------------------------------------------------------------
//
// Build-wide constants and small portability macros used by every layer:
//
//   kCacheLineSize      the size to align and pad hot atomics to (64; the standard's
//                       hardware_destructive_interference_size is missing under clang 16).
//   PLEXUS_LIKELY(x)    branch hints for the checks that guard debug-only paths.
//   kSanitizeThread     true in ThreadSanitizer builds (tests scale stress loops down with it).

#pragma once

#include <cstddef>

namespace plexus {

inline constexpr std::size_t kCacheLineSize = 64;

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizeThread = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kSanitizeThread = true;
#else
inline constexpr bool kSanitizeThread = false;
#endif
#else
inline constexpr bool kSanitizeThread = false;
#endif

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizeAddress = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitizeAddress = true;
#else
inline constexpr bool kSanitizeAddress = false;
#endif
#else
inline constexpr bool kSanitizeAddress = false;
#endif

}  // namespace plexus

#define PLEXUS_LIKELY(x) __builtin_expect(!!(x), 1)
#define PLEXUS_UNLIKELY(x) __builtin_expect(!!(x), 0)
