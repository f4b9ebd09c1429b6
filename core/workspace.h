// Scratch tensors for values that live only inside one layer's backward
// (gradients of intermediate activations). One workspace serves every block,
// so these cost one layer's worth of memory, not depth's worth.
#pragma once

#include <array>

#include "core/tensor.h"

namespace vmoe {

enum class Scratch : int {
  kNormGrad,
  kQkvGrad,
  kScoresGrad,
  kContextGrad,
  kHiddenGrad,
  kExpertInGrad,   // MoE: gradient of the dispatched buffers
  kExpertOutGrad,  // MoE: gradient of the expert outputs
  kCount
};

class Workspace {
 public:
  explicit Workspace(Backend& backend) {
    for (Tensor& t : slots_) t.bind(backend);
  }
  // The slot's tensor, grown to hold `shape`; contents undefined.
  float* get(Scratch slot, const Shape& shape) {
    Tensor& t = slots_[static_cast<int>(slot)];
    t.resize(shape);
    return t.data();
  }

 private:
  std::array<Tensor, static_cast<int>(Scratch::kCount)> slots_;
};

}  // namespace vmoe
