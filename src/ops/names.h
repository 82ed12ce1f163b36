// The words and units the operator view's JSON and its metrics share, so that a mode is spelled
// the same on /api and on /metrics and durations are seconds in both.

#pragma once

#include <chrono>

#include "plexus/bus/subscription.h"

namespace plexus::ops::ops_internal {

inline const char* ModeName(DeliveryMode mode) {
  switch (mode) {
    case DeliveryMode::kPool:
      return "pool";
    case DeliveryMode::kDedicatedThread:
      return "dedicated_thread";
    case DeliveryMode::kSynchronous:
      return "synchronous";
  }
  return "unknown";
}

inline double Seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace plexus::ops::ops_internal
