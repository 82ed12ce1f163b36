#include "progress.h"

#include <algorithm>
#include <cstdio>

#include "plexus/bus/subscription.h"
#include "report.h"

namespace demo {

void ProgressDisplay::Show() {
  static constexpr const char* kPhaseNames[] = {"flat-out", "paced", "draining"};
  const double elapsed = Elapsed();
  const plexus::SubscriptionStats pool_stats = subscribers_.pool_all.subscription->Stats();
  const plexus::SubscriptionStats dedicated_stats =
      subscribers_.dedicated_all.subscription->Stats();
  max_depth_seen_ = std::max({max_depth_seen_, pool_stats.max_depth, dedicated_stats.max_depth});
  std::printf(
      "\r[%4.1fs %-8s] published %11s | delivered: pool %11s typed %9s dedicated %11s"
      " sync %10s | depth %zu/%zu max %zu   ",
      elapsed, kPhaseNames[phase_.load(std::memory_order_relaxed)],
      Grouped(PublishedByEveryone(producers_)).c_str(),
      Grouped(subscribers_.pool_all.events.Get()).c_str(),
      Grouped(subscribers_.typed_all.events.Get()).c_str(),
      Grouped(subscribers_.dedicated_all.events.Get()).c_str(),
      Grouped(subscribers_.SyncDelivered()).c_str(), pool_stats.depth, dedicated_stats.depth,
      max_depth_seen_);
  std::fflush(stdout);
}

}  // namespace demo
