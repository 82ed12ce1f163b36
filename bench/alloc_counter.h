// Counts heap allocations made by the benchmark binary, so benchmarks can report allocations
// per operation (the replaced global operator new/delete live in alloc_counter.cc).
#pragma once

#include <atomic>
#include <cstdint>

namespace plexus_bench {

// Total calls to operator new (all forms) since the process started.
std::uint64_t AllocationCount() noexcept;

// Reports allocations per iteration as the counter "allocs/op" on `state` from a snapshot
// taken before the timed loop.
template <class State>
void ReportAllocationsPerIteration(State& state, std::uint64_t allocations_before) {
  const double allocations = static_cast<double>(AllocationCount() - allocations_before);
  state.counters["allocs/op"] = allocations / static_cast<double>(state.iterations());
}

}  // namespace plexus_bench
