// Counts heap allocations made by the benchmark binary, so benchmarks can report allocations
// per operation (the replaced global operator new/delete live in alloc_counter.cc).
//
// Byte counting (for memory-per-object rows) is off by default, because it costs every free an
// extra atomic operation on a shared counter: a row switches it on around what it measures and
// reads the net bytes (allocated minus freed, by usable block size) of that window.
#pragma once

#include <atomic>
#include <cstdint>

namespace plexus_bench {

// Total calls to operator new (all forms) since the process started.
std::uint64_t AllocationCount() noexcept;

// Switches byte counting on or off (returns the previous state). While on, every operator new
// adds its block's usable size (glibc malloc_usable_size) and every operator delete subtracts
// it; blocks allocated while it was off are subtracted too when freed while it is on, so read
// the difference of two NetAllocatedBytes() snapshots taken while it was on: the heap growth
// through operator new between them.
bool EnableByteCounting(bool on) noexcept;
// Net bytes counted so far (may be negative: see above).
std::int64_t NetAllocatedBytes() noexcept;

// Reports allocations per iteration as the counter "allocs/op" on `state` from a snapshot
// taken before the timed loop.
template <class State>
void ReportAllocationsPerIteration(State& state, std::uint64_t allocations_before) {
  const double allocations = static_cast<double>(AllocationCount() - allocations_before);
  state.counters["allocs/op"] = allocations / static_cast<double>(state.iterations());
}

}  // namespace plexus_bench
