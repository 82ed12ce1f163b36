// The live progress line on stderr: calls up, calls/s, events/s, the deepest queue, alerts and
// what was shed. On a terminal it is rewritten in place every quarter second; otherwise a
// plain line is printed every half second.
//
// Thread safety: thread-compatible (the main thread's).

#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace sim {

struct ProgressSample {
  std::int64_t calls_up = 0;
  std::uint64_t finished = 0;
  std::uint64_t events = 0;
  std::size_t queue_depth = 0;
  std::uint64_t alerts = 0;
  std::uint64_t shed = 0;
  const char* phase = "";
};

class Progress {
 public:
  explicit Progress(std::function<ProgressSample()> sample);
  // Prints a line if it is time to; keeps the peak RSS.
  void Tick();
  // Ends the in-place line (a newline on a terminal).
  void Finish();
  double Elapsed() const;
  std::int64_t PeakRssKb() const { return peak_rss_kb_; }

 private:
  std::function<ProgressSample()> sample_;
  const bool terminal_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = started_;
  ProgressSample previous_;
  bool printed_ = false;
  std::int64_t peak_rss_kb_ = 0;
};

// This process's resident set size and its peak, in KiB (VmRSS, VmHWM).
std::int64_t CurrentRssKb();
std::int64_t PeakRssKb();

}  // namespace sim
