// The simulator's command line (CLI11).

#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sim {

enum class ReportFormat { kText, kJson };

struct Options {
  double rate = 1000;       // calls offered per second
  double duration = 5;      // seconds of arrivals
  std::uint64_t calls = 0;  // stop after this many calls (0: no limit)
  std::uint32_t devices = 200;
  std::uint32_t threads = 0;  // pool threads (0: one per hardware thread, at least two)
  std::uint64_t seed = 1;
  ReportFormat report = ReportFormat::kText;
  std::string listen;          // ADDR:PORT of the operator view; empty: off
  std::string cdr;             // SQLite file; empty: in memory
  std::string events;          // JSON-lines file, "-" for stdout; empty: rendered, not written
  std::uint32_t talk_ms = 60;  // mean talk time of an answered call
  std::uint64_t max_in_flight = 100'000;  // admission limit
  std::uint32_t queue_limit = 4096;       // queue high water / the stream's capacity
  bool checks = true;                     // reference debugging and lock-order validation
  double stop_grace = 0;  // seconds the calls in flight may run on after a stop signal
  // The cluster (apps/sim/cluster.h): NATS URLs, comma-separated; empty: no cluster.
  std::string nats;
  std::string node_id;  // empty: this host's
  std::string cluster_name = "plexus";
  std::uint32_t heartbeat_ms = 1000;
};

// The options, or the exit status to leave with: 0 after --help, 2 after a bad flag (a
// one-line message naming it is printed on stderr).
struct Parsed {
  std::optional<Options> options;
  int exit_status = 0;
};
Parsed ParseOptions(int argc, char** argv);

}  // namespace sim
