#include "generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "workload.h"

namespace sim {

void Generator::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Generator::Run() {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point started = Clock::now();
  const double rate = options_.rate;
  const std::uint64_t limit = options_.calls;
  const std::chrono::milliseconds mean_talk(options_.talk_ms);
  // Arrivals fall at i / rate for i = 0, 1, ...: ceil(duration * rate) of them, or `limit`.
  std::uint64_t total = static_cast<std::uint64_t>(std::ceil(options_.duration * rate));
  if (limit != 0) total = std::min(total, limit);
  std::uint64_t next = 0;  // index of the next arrival
  const auto& counters = engine_.Counters();
  for (;;) {
    if (stop_.load(std::memory_order_relaxed)) break;
    const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    std::uint64_t due = static_cast<std::uint64_t>(std::floor(elapsed * rate)) + 1;
    due = std::min(due, total);
    if (elapsed >= options_.duration) {
      // Arrivals due that this thread had no time to offer: the rate was more than it could.
      if (due > next) shed_late_.store(due - next, std::memory_order_relaxed);
      break;
    }
    const bool congested = next < due && congested_();
    for (; next < due; ++next) {
      offered_.fetch_add(1, std::memory_order_relaxed);
      if (congested || counters.in_flight.load(std::memory_order_relaxed) >=
                           static_cast<std::int64_t>(options_.max_in_flight)) {
        shed_admission_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      engine_.Start(PlanCall(options_.seed, next, options_.devices, mean_talk));
    }
    if (next >= total) break;
    // Sleep until the next arrival is due (at most a millisecond, to notice Stop).
    const double next_at = static_cast<double>(next) / rate;
    const double wait = std::min(next_at - elapsed, 0.001);
    if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
  }
  done_.store(true, std::memory_order_release);
}

}  // namespace sim
