// -----------------------------------------------------------------------------
// plexus/core/id.h
// -----------------------------------------------------------------------------
//
// Process-unique 64-bit ids for objects that need a stable name in reports (topics,
// subscriptions, task processors). Ids start at 1 and never repeat within a process.
//
// Thread safety: thread-safe.

#pragma once

#include <cstdint>

namespace plexus {

std::uint64_t NextUniqueId() noexcept;

}  // namespace plexus
