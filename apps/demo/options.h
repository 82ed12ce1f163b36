// The demo's fixed parameters and its command-line options.

#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>

namespace demo {

inline constexpr const char* kUserNames[] = {"alice", "bob",   "carol", "dave",
                                             "erin",  "frank", "grace", "heidi"};
inline constexpr int kMaxProducers = static_cast<int>(std::size(kUserNames));
inline constexpr int kChannelsPerProducer = 8;
inline constexpr int kDevicesPerProducer = 2;
// In the flat-out phase a producer waits (yields) while the producers together are more than
// this many events ahead of the slowest asynchronous subscriber: the demo shows a bus keeping
// up, not an unbounded queue growing. The asynchronous subscriptions' congestion alerts are set
// above it (they would log a warning at each crossing of the default 500).
inline constexpr std::uint64_t kWindow = 4096;
inline constexpr std::uint32_t kHighWater = 4 * kWindow;
inline constexpr std::uint32_t kLowWater = kWindow;
// In the paced phase each producer publishes one event, then sleeps this long: the bus is
// nearly idle, so the latency measured is the bus's, not the time spent behind a full queue.
inline constexpr std::chrono::microseconds kPacedInterval{250};
inline constexpr int kFormatEvery = 256;       // the dedicated subscriber renders every 256th
inline constexpr int kLatencySampleEvery = 4;  // flat-out phase: latency of every 4th event
inline constexpr std::size_t kMaxLatencySamples = 4'000'000;

enum Phase : int { kFlatOut = 0, kPaced = 1, kStop = 2 };

struct Options {
  double seconds = 3.0;        // flat-out phase
  double paced_seconds = 1.0;  // paced (latency) phase
  int producers = 4;
};

// Options from --seconds=, --paced-seconds= and --producers=; nullopt if any is unknown or out
// of range.
std::optional<Options> ParseOptions(int argc, char** argv);

}  // namespace demo
