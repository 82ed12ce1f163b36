// Running the demo: the producer threads through the flat-out and paced phases, then the wait
// for the asynchronous subscribers to catch up.

#pragma once

#include <atomic>
#include <cstdint>

#include "options.h"
#include "producers.h"
#include "progress.h"
#include "subscribers.h"

namespace demo {

// What the flat-out phase achieved (its queues hold at most about kWindow events).
struct FlatOutFigures {
  double seconds = 0;
  std::uint64_t published = 0;
  std::uint64_t delivered = 0;
  double cpu_seconds = 0;  // process CPU time, every thread
};

// Starts one thread per producer, runs `options.seconds` flat out and `options.paced_seconds`
// paced (advancing `phase`), showing progress every 200 ms, then stops and joins the threads.
FlatOutFigures RunProducers(const Options& options, Producers& producers, Subscribers& subscribers,
                            std::atomic<int>& phase, ProgressDisplay& progress);

// Waits until every subscriber received what it should, for at most 20 s (a lost event must not
// hang the demo; the verification then reports it), showing progress.
void WaitForSubscribersToDrain(Subscribers& subscribers, ProgressDisplay& progress);

}  // namespace demo
