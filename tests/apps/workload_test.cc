// PlanCall: the workload follows from the random seed alone.

#include "workload.h"

#include <array>

#include "gtest/gtest.h"

namespace sim {
namespace {

using std::chrono::milliseconds;

bool SamePlan(const CallPlan& a, const CallPlan& b) {
  return a.id == b.id && a.device == b.device && a.callee == b.callee && a.outcome == b.outcome &&
         a.ring_delay == b.ring_delay && a.answer_delay == b.answer_delay && a.talk == b.talk &&
         a.response_delay == b.response_delay && a.refreshes == b.refreshes;
}

TEST(PlanCall, OP03_SameSeedSamePlans) {
  for (std::uint64_t i = 0; i < 1000; ++i) {
    EXPECT_TRUE(
        SamePlan(PlanCall(7, i, 200, milliseconds(60)), PlanCall(7, i, 200, milliseconds(60))))
        << i;
  }
}

TEST(PlanCall, OP03_OtherSeedOtherPlans) {
  int differ = 0;
  for (std::uint64_t i = 0; i < 100; ++i) {
    differ += SamePlan(PlanCall(7, i, 200, milliseconds(60)), PlanCall(8, i, 200, milliseconds(60)))
                  ? 0
                  : 1;
  }
  EXPECT_GT(differ, 90);
}

TEST(PlanCall, OP02_PlansStayInTheirBounds) {
  std::array<int, 4> outcomes{};
  for (std::uint64_t i = 0; i < 2000; ++i) {
    const CallPlan p = PlanCall(1, i, 50, milliseconds(60));
    EXPECT_EQ(p.id, i + 1);
    EXPECT_LT(p.device, 50u);
    ++outcomes[static_cast<std::size_t>(p.outcome)];
    // The answer comes before the INVITE's timeout, which comes before the ring timeout.
    EXPECT_LT(p.ring_delay + p.answer_delay, kTsxTimeoutAfter);
    EXPECT_LT(kTsxTimeoutAfter, kRingTimeoutAfter);
    // Every refresh falls within the talk; responses before their transaction's timeout.
    EXPECT_LE(p.refreshes, kMaxRefreshes);
    EXPECT_LE(p.refreshes * kRefreshInterval, p.talk);
    EXPECT_LT(p.response_delay, kTsxTimeoutAfter);
    EXPECT_GE(p.talk, milliseconds(30));
    EXPECT_LE(p.talk, milliseconds(90));
  }
  for (int n : outcomes) EXPECT_GT(n, 0);  // every outcome occurs
}

}  // namespace
}  // namespace sim
