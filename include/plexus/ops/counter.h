// -----------------------------------------------------------------------------
// plexus/ops/counter.h
// -----------------------------------------------------------------------------
//
// Counter is a named, monotonic count that a program keeps of its own work (calls set up,
// requests served, ...) and that the operator view shows beside plexus's statistics: in
// /metrics as `plexus_app_events_total{counter="<name>"}`, in /api/counters, and on the page
// (each with its rate per second; the first by name is charted over the last minutes). The view has
// no notion of what a program does; this is how the program tells it.
//
//   plexus::ops::Counter calls("calls", "Calls set up.");
//   ...
//   calls.Add();  // one relaxed atomic increment: the view reads the value when asked
//
// A counter is listed while it lives: its constructor registers it, its destructor takes it
// out (the next snapshot no longer has it). Names are unique among live counters, because
// they identify the series; constructing a second live counter with a name in use is misuse,
// reported at the caller, and that counter counts but is not listed.
//
// Thread safety: Add and Value may be called from any thread, concurrently with each other,
// with ListCounters, and with the construction and destruction of other counters. A counter
// must not be destroyed while another thread calls its Add.

#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "plexus/core/source_location.h"

namespace plexus::ops {

class Counter {
 public:
  explicit Counter(std::string name, std::string help = {},
                   SourceLocation where = SourceLocation::current());
  ~Counter();
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Add(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t Value() const noexcept { return value_.load(std::memory_order_relaxed); }
  const std::string& Name() const noexcept { return name_; }
  const std::string& Help() const noexcept { return help_; }

 private:
  const std::string name_;
  const std::string help_;
  bool listed_ = false;  // written once, by the constructor
  std::atomic<std::uint64_t> value_{0};
};

// A live counter's state at one moment.
struct CounterStats {
  std::string name;
  std::string help;
  std::uint64_t value = 0;
};

// Every listed live counter, sorted by name.
std::vector<CounterStats> ListCounters();

}  // namespace plexus::ops
