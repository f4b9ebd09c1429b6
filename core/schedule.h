// Learning-rate schedule: linear warm-up from 0, then linear or cosine decay
// (or none) from the base rate to the end rate at the last step.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "core/hd.h"

namespace vmoe {

enum class Decay { kLinear, kCosine, kConstant };

struct LrSchedule {
  double base = 1e-3;
  double end = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  Decay decay = Decay::kLinear;

  // Rate for step `step` (0-based). Host and device (the optimiser's
  // begin_update computes it where the update runs).
  VMOE_HD double at(int64_t step) const {
    if (step < warmup_steps) return base * static_cast<double>(step + 1) / warmup_steps;
    if (decay == Decay::kConstant || total_steps <= warmup_steps) return base;
    double frac =
        static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
    frac = frac < 0.0 ? 0.0 : (frac > 1.0 ? 1.0 : frac);
    if (decay == Decay::kLinear) return base + (end - base) * frac;
    return end + (base - end) * 0.5 * (1.0 + cos(3.141592653589793 * frac));
  }
};

Decay parse_decay(const std::string& name);  // "linear" | "cosine" | "constant"

}  // namespace vmoe
