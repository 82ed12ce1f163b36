// The final report: what the run did, and the invariants that decide the exit status.

#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cluster.h"
#include "engine.h"
#include "options.h"

namespace sim {

struct QueueFigure {
  std::string name;
  std::size_t max_depth = 0;
  std::uint64_t dropped = 0;
};

struct Invariant {
  std::string name;  // "records == finished calls", ...
  bool held = false;
  std::string detail;
};

// Everything the report shows, gathered once the run has drained.
struct Figures {
  Options options;
  bool interrupted = false;
  double seconds = 0;  // from the first arrival to the last call's end
  // Calls.
  std::uint64_t offered = 0;
  std::uint64_t started = 0;
  std::uint64_t finished = 0;
  std::uint64_t shed_admission = 0;
  std::uint64_t shed_late = 0;
  std::int64_t peak_in_flight = 0;
  std::array<std::uint64_t, kDispositions> dispositions{};
  std::uint64_t transactions = 0;
  std::uint64_t timers_scheduled = 0, timers_fired = 0, timers_stale = 0, timers_cancelled = 0;
  // Events.
  std::uint64_t published = 0;     // by the calls, on their topics
  std::uint64_t on_all_topic = 0;  // reached "calls" (raw messages and cache updates)
  std::uint64_t delivered = 0;     // router callbacks
  std::uint64_t stream_lines = 0;
  std::uint64_t stream_dropped = 0;
  std::uint64_t latency_samples = 0;
  double latency_us[5] = {};  // p50, p90, p99, p99.9, max
  std::vector<QueueFigure> queues;
  std::uint64_t alerts = 0;
  std::vector<std::string> alert_queues;
  // Consumers.
  std::string cdr_path;
  std::int64_t cdr_rows = -1;
  std::uint64_t cdr_routed = 0;
  std::uint64_t cdr_transactions = 0;
  std::uint64_t cdr_failures = 0;
  std::uint32_t devices_in_use = 0;
  std::uint32_t devices_peak_in_use = 0;
  std::uint64_t cache_entries = 0;
  // Lifetimes.
  std::int64_t dialogs_alive = 0;
  std::int64_t transactions_alive = 0;
  std::size_t live_topics = 0;
  std::size_t live_subscriptions = 0;
  std::int64_t leaked_references = 0;  // -1: reference debugging was off
  std::uint64_t lock_order_reports = 0;
  // Memory.
  std::int64_t baseline_rss_kb = 0;
  std::int64_t peak_rss_kb = 0;
  std::vector<Invariant> invariants;
  // With --nats: the cluster's figures, taken before the bridge stopped.
  std::optional<ClusterFigures> cluster;
};

// Fills `f.invariants` from the figures. Returns true if every one held.
bool CheckInvariants(Figures& f);

std::string TextReport(const Figures& f);
std::string JsonReport(const Figures& f);

}  // namespace sim
