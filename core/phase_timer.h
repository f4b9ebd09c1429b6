// Wall-clock time per named phase of a step (routing, dispatch, experts, ...),
// for benchmarks. Off unless enabled; a disabled scope costs one branch.
// CPU timing: a GPU backend must synchronise for the numbers to mean anything.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace vmoe {

class PhaseTimer {
 public:
  static PhaseTimer& instance() {
    static PhaseTimer timer;
    return timer;
  }
  void enable(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void add(const char* phase, double seconds) { totals_[phase] += seconds; }
  const std::map<std::string, double>& totals() const { return totals_; }
  void reset() { totals_.clear(); }

 private:
  bool enabled_ = false;
  std::map<std::string, double> totals_;
};

// Adds the time until the end of the scope to `phase` when timing is enabled.
class PhaseScope {
 public:
  explicit PhaseScope(const char* phase) : phase_(phase) {
    if (PhaseTimer::instance().enabled()) start_ = std::chrono::steady_clock::now();
  }
  ~PhaseScope() {
    if (!PhaseTimer::instance().enabled()) return;
    const auto end = std::chrono::steady_clock::now();
    PhaseTimer::instance().add(phase_, std::chrono::duration<double>(end - start_).count());
  }
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  const char* phase_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace vmoe
