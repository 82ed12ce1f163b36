// What the message allocator (message_allocator.cc) shows of itself, for tests and diagnosis.
//
// Thread safety: callable from any thread.

#pragma once

#include <cstdint>

namespace plexus::bus_internal {

// Slabs of message blocks taken from the system and not yet given back. A slab goes back when
// every block carved from it went back and its thread exited or moved on to another slab.
std::int64_t LiveMessageSlabs() noexcept;

}  // namespace plexus::bus_internal
