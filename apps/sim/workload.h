// The workload: what each call will do, decided from the random seed (--seed) alone, so that one
// seed gives the same calls (devices, outcomes, talk times, refreshes) however the threads
// interleave.

#pragma once

#include <chrono>
#include <cstdint>

namespace sim {

enum class Outcome : std::uint8_t {
  kAnswered,    // 180 Ringing, then 200 OK; talk; session refreshes; BYE
  kNoAnswer,    // 180 Ringing, then the ring timeout fires and the caller cancels
  kBusy,        // 486 Busy Here
  kNoResponse,  // nothing comes back: the INVITE transaction times out
};

// The times a call's simulated network and people take (real time, scaled to keep runs short).
inline constexpr std::chrono::milliseconds kTsxTimeoutAfter{32};   // Timer B/F
inline constexpr std::chrono::milliseconds kRingTimeoutAfter{40};  // from the INVITE
inline constexpr std::chrono::milliseconds kRefreshInterval{20};
inline constexpr std::uint32_t kMaxRefreshes = 3;

// One call's plan.
struct CallPlan {
  std::uint64_t id = 0;  // 1, 2, 3, ... in arrival order
  std::uint32_t device = 0;
  std::uint32_t callee = 0;
  Outcome outcome = Outcome::kAnswered;
  std::chrono::microseconds ring_delay{0};      // INVITE -> 180 (or 486)
  std::chrono::microseconds answer_delay{0};    // 180 -> 200 OK
  std::chrono::microseconds talk{0};            // 200 OK -> BYE
  std::chrono::microseconds response_delay{0};  // any other request -> its response
  std::uint32_t refreshes = 0;                  // session refreshes during the talk
};

// Call `index` (0-based) of the workload `seed` over `devices` devices, with talk times
// around `mean_talk`.
CallPlan PlanCall(std::uint64_t seed, std::uint64_t index, std::uint32_t devices,
                  std::chrono::milliseconds mean_talk);

}  // namespace sim
