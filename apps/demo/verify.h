// The demo's verdict. It exits 0 only if every subscriber received exactly the events published
// on the topics it listens to, each producer's in order (CheckDeliveries), every subscription got
// exactly one final message and nothing after it (UnsubscribeJoinAndCheckFinals, subscribers.h),
// and no topic, subscription or other reference-counted object outlived the run
// (CheckNothingLeaked).

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "subscribers.h"

namespace demo {

// Prints the deliveries table: each subscriber's count against what it should have received.
// Mismatches and out-of-order events go to `failures`. Returns the deliveries in all.
std::uint64_t CheckDeliveries(Subscribers& subscribers, std::vector<std::string>& failures);

// Once every reference was dropped: no live topic or subscription, and an empty leak report
// (printed by reference debugging on stderr).
void CheckNothingLeaked(std::vector<std::string>& failures);

// Prints OK or the failures; returns the exit status.
int Verdict(const std::vector<std::string>& failures);

}  // namespace demo
