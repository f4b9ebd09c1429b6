#include "core/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/check.h"

namespace vmoe {

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return base * static_cast<double>(step + 1) / warmup_steps;
  if (decay == Decay::kConstant || total_steps <= warmup_steps) return base;
  const double frac = std::clamp(
      static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps),
      0.0, 1.0);
  if (decay == Decay::kLinear) return base + (end - base) * frac;
  return end + (base - end) * 0.5 * (1.0 + std::cos(std::numbers::pi * frac));
}

Decay parse_decay(const std::string& name) {
  if (name == "linear") return Decay::kLinear;
  if (name == "cosine") return Decay::kCosine;
  if (name == "constant") return Decay::kConstant;
  fail("--lr_decay must be 'linear', 'cosine' or 'constant', got '", name, "'");
}

}  // namespace vmoe
