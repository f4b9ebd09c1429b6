#include "core/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/check.h"

namespace vmoe {

Decay parse_decay(const std::string& name) {
  if (name == "linear") return Decay::kLinear;
  if (name == "cosine") return Decay::kCosine;
  if (name == "constant") return Decay::kConstant;
  fail("--lr_decay must be 'linear', 'cosine' or 'constant', got '", name, "'");
}

}  // namespace vmoe
