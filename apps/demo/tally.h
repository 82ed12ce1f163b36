// What each subscriber of the demo records: the events it received, whether each producer's
// arrived in order, latency samples, its final message. The verification reads these once the
// subscriptions have been joined.

#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "events.h"
#include "options.h"
#include "plexus/bus/subscription.h"
#include "plexus/core/clock.h"

namespace demo {

// A counter written by one serialized callback and read by the main thread.
struct alignas(64) Count {
  std::atomic<std::uint64_t> n{0};
  void Bump() noexcept {
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  std::uint64_t Get() const noexcept { return n.load(std::memory_order_acquire); }
};

// What one subscription saw. Fields other than the atomics are touched only by its callback
// (serialized) until it has been joined.
struct Tally {
  std::string label;
  Count events;                                // our events received
  std::atomic<int> finals{0};                  // final messages received
  std::atomic<int> after_final{0};             // callbacks after the final message (must stay 0)
  std::vector<std::uint64_t> last_seq;         // per producer: the last seq seen, +1 (0: none)
  std::uint64_t out_of_order = 0;              // events older than one already seen from a producer
  std::vector<std::int64_t> latency_busy_ns;   // flat-out phase, every kLatencySampleEvery-th
  std::vector<std::int64_t> latency_paced_ns;  // paced phase, every event
  std::uint64_t formatted = 0;                 // events rendered (dedicated subscriber)
  std::string last_json;
  std::string last_text;
  std::uint64_t expected = 0;                        // computed after the producers stop
  std::optional<plexus::Subscription> subscription;  // set once subscribed; reset() drops it

  explicit Tally(std::string l, int producers)
      : label(std::move(l)), last_seq(static_cast<std::size_t>(producers), 0) {
    latency_busy_ns.reserve(1 << 16);
    latency_paced_ns.reserve(1 << 16);
  }

  void Final() {
    if (finals.fetch_add(1, std::memory_order_relaxed) != 0) {
      after_final.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void See(const Origin& origin, bool check_order, bool sample_latency) {
    if (finals.load(std::memory_order_relaxed) != 0) after_final.fetch_add(1);
    if (check_order) {
      std::uint64_t& last = last_seq[static_cast<std::size_t>(origin.producer)];
      if (origin.seq + 1 <= last) ++out_of_order;
      last = origin.seq + 1;
    }
    if (sample_latency) {
      std::vector<std::int64_t>& samples = origin.paced ? latency_paced_ns : latency_busy_ns;
      if ((origin.paced || origin.seq % kLatencySampleEvery == 0) &&
          samples.size() < kMaxLatencySamples) {
        samples.push_back(plexus::MonotonicNanos() - origin.sent_ns);
      }
    }
    events.Bump();
  }
};

}  // namespace demo
