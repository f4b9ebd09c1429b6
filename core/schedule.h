// Learning-rate schedule: linear warm-up from 0, then linear or cosine decay
// (or none) from the base rate to the end rate at the last step.
#pragma once

#include <cstdint>
#include <string>

namespace vmoe {

enum class Decay { kLinear, kCosine, kConstant };

struct LrSchedule {
  double base = 1e-3;
  double end = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  Decay decay = Decay::kLinear;

  // Rate for step `step` (0-based).
  double at(int64_t step) const;
};

Decay parse_decay(const std::string& name);  // "linear" | "cosine" | "constant"

}  // namespace vmoe
