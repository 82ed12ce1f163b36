#include "run.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>
#include <vector>

namespace demo {

FlatOutFigures RunProducers(const Options& options, Producers& producers, Subscribers& subscribers,
                            std::atomic<int>& phase, ProgressDisplay& progress) {
  const std::vector<const Count*> throttle_on = {&subscribers.pool_all.events,
                                                 &subscribers.dedicated_all.events};
  std::vector<std::thread> threads;
  progress.Start();
  const std::int64_t cpu_started = static_cast<std::int64_t>(std::clock());
  for (auto& p : producers) {
    threads.emplace_back(
        [&p, &phase, &producers, &throttle_on] { RunProducer(*p, phase, producers, throttle_on); });
  }

  const auto run_until = [&](double until) {
    for (double now = progress.Elapsed(); now < until; now = progress.Elapsed()) {
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(0.2, until - now)));
      progress.Show();
    }
  };
  run_until(options.seconds);
  FlatOutFigures flat;
  flat.seconds = progress.Elapsed();
  flat.published = PublishedByEveryone(producers);
  flat.delivered = subscribers.Delivered();
  flat.cpu_seconds =
      static_cast<double>(static_cast<std::int64_t>(std::clock()) - cpu_started) / CLOCKS_PER_SEC;
  phase.store(kPaced, std::memory_order_relaxed);
  run_until(options.seconds + options.paced_seconds);
  phase.store(kStop, std::memory_order_relaxed);
  for (std::thread& t : threads) t.join();
  return flat;
}

void WaitForSubscribersToDrain(Subscribers& subscribers, ProgressDisplay& progress) {
  const std::vector<Tally*> tallies = subscribers.All();
  const auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto last_progress = std::chrono::steady_clock::now();
  for (;;) {
    bool all_there = true;
    for (Tally* t : tallies) all_there = all_there && t->events.Get() >= t->expected;
    if (all_there || std::chrono::steady_clock::now() > drain_deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (std::chrono::steady_clock::now() - last_progress > std::chrono::milliseconds(200)) {
      progress.Show();
      last_progress = std::chrono::steady_clock::now();
    }
  }
  progress.Show();
  std::printf("\n\n");  // ends the progress line
}

}  // namespace demo
