// PhaseTimer: totals per phase, and each span of the phases asked for.
#include <gtest/gtest.h>

#include <thread>

#include "core/phase_timer.h"

namespace vmoe {
namespace {

TEST(PhaseTimer, KeepsEachSpanOfThePhasesAskedFor) {
  PhaseTimer& timer = PhaseTimer::instance();
  timer.enable(true);  // the host's clock
  timer.keep_spans("wait.");
  for (int i = 0; i < 3; ++i) {
    PhaseScope outer("work");
    PhaseScope inner("wait.here");
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + i));
  }
  { PhaseScope other("wait.there"); }
  const std::map<std::string, double> totals = timer.totals();
  const auto& spans = timer.spans();
  ASSERT_EQ(spans.count("work"), 0u);  // not asked for
  ASSERT_EQ(spans.at("wait.here").size(), 3u);
  ASSERT_EQ(spans.at("wait.there").size(), 1u);
  double sum = 0;
  for (size_t i = 0; i < 3; ++i) {
    const double s = spans.at("wait.here")[i];
    EXPECT_GE(s, 1e-3 * static_cast<double>(1 + i)) << i;  // slept at least this long
    sum += s;
  }
  EXPECT_DOUBLE_EQ(sum, totals.at("wait.here"));
  EXPECT_GE(totals.at("work"), totals.at("wait.here"));
  // Off: later spans are not kept; enabling again starts afresh.
  timer.keep_spans(nullptr);
  { PhaseScope more("wait.here"); }
  timer.totals();
  EXPECT_EQ(timer.spans().at("wait.here").size(), 3u);
  timer.enable(true);
  EXPECT_TRUE(timer.spans().empty());
  timer.enable(false);
}

}  // namespace
}  // namespace vmoe
