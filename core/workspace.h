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
  kExpertInGrad,      // MoE: gradient of the dispatched buffers
  kExpertOutGrad,     // MoE: gradient of the expert outputs
  kOutputGrad,        // a layer's incoming gradient (bf16 copies only)
  kHeadsGrad,         // head-major attention: d(q|k|v) [3, B, H, Tp, hd]
  kHeadsContextGrad,  // head-major attention: d(context) [B, H, Tp, hd]
  kCount
};

class Workspace {
 public:
  explicit Workspace(Backend& backend) {
    for (Tensor& t : slots_) t.bind(backend);
    for (Bf16Tensor& t : bf16_slots_) t.bind(backend);
  }
  // The slot's tensor, grown to hold `shape`; contents undefined.
  float* get(Scratch slot, const Shape& shape) {
    Tensor& t = slots_[static_cast<int>(slot)];
    t.resize(shape);
    return t.data();
  }
  // Storage for the bf16 copy of the slot's values (bf16_copy()): null under
  // fp32.
  uint16_t* get_bf16(Scratch slot, const Shape& shape) {
    return bf16_copy(bf16_slots_[static_cast<int>(slot)], shape);
  }
  // x [shape] as a GEMM input read by several GEMMs: under bf16 converted
  // once into the slot's bf16 storage, so they share one conversion.
  GemmInput shared_input(Scratch slot, const float* x, const Shape& shape) {
    return with_bf16_copy(bf16_slots_[static_cast<int>(slot)], x, shape);
  }
  // The same for an input that may come with its copy (then used as is).
  GemmInput shared_input(Scratch slot, GemmInput x, const Shape& shape) {
    return x.bf16 != nullptr ? x : shared_input(slot, x.f32, shape);
  }

 private:
  std::array<Tensor, static_cast<int>(Scratch::kCount)> slots_;
  std::array<Bf16Tensor, static_cast<int>(Scratch::kCount)> bf16_slots_;
};

}  // namespace vmoe
