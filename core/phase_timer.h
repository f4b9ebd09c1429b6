// Time per named phase of a step (routing, dispatch, experts, attention, ...),
// for benchmarks. Off unless enabled; a disabled scope costs one branch.
// Enabled with a backend, phases are timed on its timeline (CUDA events on a
// GPU, where the host only queues work): synchronise the backend before
// reading totals(). Enabled without one, on the host's steady clock.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/backend.h"

namespace vmoe {

class PhaseTimer {
 public:
  static PhaseTimer& instance() {
    static PhaseTimer timer;
    return timer;
  }
  void enable(bool on, Backend* backend = nullptr) {
    enabled_ = on;
    backend_ = backend;
    reset();
  }
  bool enabled() const { return enabled_; }
  // A point on the clock; a phase spans two of them, resolved in totals().
  int mark() { return backend_ != nullptr ? backend_->time_mark() : host_.mark(); }
  void add(const char* phase, int from, int to) { pending_.push_back({phase, from, to}); }
  // Seconds per phase since reset() (nested phases each count their own).
  const std::map<std::string, double>& totals() {
    for (const Span& s : pending_) {
      const double seconds = backend_ != nullptr ? backend_->seconds_between(s.from, s.to)
                                                 : host_.seconds(s.from, s.to);
      totals_[s.phase] += seconds;
      if (keep_prefix_ != nullptr && std::string_view(s.phase).starts_with(keep_prefix_))
        kept_[s.phase].push_back(seconds);
    }
    pending_.clear();
    return totals_;
  }
  // Phases named `prefix`... also keep each span's seconds (their spread, not
  // just their sum: e.g. one rank's waits at each barrier); null: none.
  void keep_spans(const char* prefix) { keep_prefix_ = prefix; }
  // Each kept phase's spans, in seconds, as of the last totals().
  const std::map<std::string, std::vector<double>>& spans() const { return kept_; }
  void reset() {
    totals_.clear();
    kept_.clear();
    pending_.clear();
    host_.clear();
    if (backend_ != nullptr) backend_->clear_time_marks();
  }

 private:
  struct Span {
    const char* phase;
    int from, to;
  };
  bool enabled_ = false;
  Backend* backend_ = nullptr;
  HostTimeMarks host_;
  std::vector<Span> pending_;
  std::map<std::string, double> totals_;
  const char* keep_prefix_ = nullptr;
  std::map<std::string, std::vector<double>> kept_;
};

// Adds the time until the end of the scope to `phase` when timing is enabled.
class PhaseScope {
 public:
  explicit PhaseScope(const char* phase) : phase_(phase) {
    if (PhaseTimer::instance().enabled()) start_ = PhaseTimer::instance().mark();
  }
  ~PhaseScope() {
    PhaseTimer& t = PhaseTimer::instance();
    if (t.enabled() && start_ >= 0) t.add(phase_, start_, t.mark());
  }
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  const char* phase_;
  int start_ = -1;
};

}  // namespace vmoe
