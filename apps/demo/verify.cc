#include "verify.h"

#include <cstdio>

#include "plexus/bus/bus_stats.h"
#include "plexus/core/ref_debug.h"
#include "report.h"

namespace demo {

std::uint64_t CheckDeliveries(Subscribers& subscribers, std::vector<std::string>& failures) {
  std::uint64_t deliveries = 0;
  std::printf("Deliveries:\n");
  for (Tally* t : subscribers.All()) {
    const std::uint64_t got = t->events.Get();
    deliveries += got;
    const bool ok = got == t->expected && t->out_of_order == 0;
    std::printf("  %-44s %11s of %11s%s\n", t->label.c_str(), Grouped(got).c_str(),
                Grouped(t->expected).c_str(), ok ? "" : "  <-- MISMATCH");
    if (got != t->expected) {
      failures.push_back(t->label + ": received " + std::to_string(got) + " events, expected " +
                         std::to_string(t->expected));
    }
    if (t->out_of_order != 0) {
      failures.push_back(t->label + ": " + std::to_string(t->out_of_order) +
                         " events out of their producer's order");
    }
  }
  return deliveries;
}

void CheckNothingLeaked(std::vector<std::string>& failures) {
  const std::size_t live_topics = plexus::LiveTopicCount();
  const std::size_t live_subscriptions = plexus::LiveSubscriptionCount();
  if (live_topics != 0 || live_subscriptions != 0) {
    failures.push_back(std::to_string(live_topics) + " topics and " +
                       std::to_string(live_subscriptions) + " subscriptions still live");
  }
  std::fflush(stdout);  // the leak report goes to stderr
  const std::size_t leaked = plexus::ReportRefLeaks();
  std::printf("\nReference-leak report: %zu leaked objects.\n", leaked);
  if (leaked != 0) failures.push_back(std::to_string(leaked) + " reference-counted objects leaked");
}

int Verdict(const std::vector<std::string>& failures) {
  if (!failures.empty()) {
    std::printf("\nFAILED:\n");
    for (const std::string& f : failures) std::printf("  - %s\n", f.c_str());
    return 1;
  }
  std::printf(
      "\nOK: every subscriber received exactly what was published to it, in order; "
      "nothing leaked.\n");
  return 0;
}

}  // namespace demo
