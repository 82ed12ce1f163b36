// The one-line progress display shown while the demo runs: events published, delivered per
// subscriber kind, the asynchronous queues' depths and the deepest seen.

#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>

#include "producers.h"
#include "subscribers.h"

namespace demo {

class ProgressDisplay {
 public:
  ProgressDisplay(Subscribers& subscribers, const Producers& producers,
                  const std::atomic<int>& phase)
      : subscribers_(subscribers), producers_(producers), phase_(phase) {}

  // Starts the clock that Elapsed() and the display's time column read.
  void Start() { started_ = std::chrono::steady_clock::now(); }
  double Elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  }

  // Rewrites the line in place (a carriage return, no newline).
  void Show();

 private:
  Subscribers& subscribers_;
  const Producers& producers_;
  const std::atomic<int>& phase_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::size_t max_depth_seen_ = 0;
};

}  // namespace demo
