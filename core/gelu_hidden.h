// The hidden layer of an MLP (dense or the experts'), as forward keeps it for
// backward: fc1's output through bias + GELU, over [experts, rows, hidden]
// (experts = 1 for a dense MLP).
//  * fp32: fc1's output, overwritten by the GELU's slope, and the GELU output.
//  * bf16: the slope as bf16 (backward multiplies it into a bf16 gradient),
//    fc1's output a bf16 temporary of forward (its GEMM writes bf16), and the
//    GELU output's copy (with its fp32 values too unless
//    Backend::bf16_copies_suffice()).
#pragma once

#include <cstdint>
#include <optional>

#include "core/activation_pool.h"
#include "core/backend.h"
#include "core/live_rows.h"
#include "core/tensor.h"

namespace vmoe {

class GeluHidden {
 public:
  explicit GeluHidden(Backend& be);

  // Storage for fc1's output [experts * rows, cols] (rows per expert), to be
  // written by fc1's GEMM before gelu(): fp32, or under bf16 bfloat16
  // (Backend::gemm_batched_to_bf16).
  struct Pre {
    float* f32;      // null under bf16
    uint16_t* bf16;  // null under fp32
  };
  // With live rows given (packed expert buffers, core/live_rows.h) the GELU
  // and its backward skip the rest (their rows of output() and of the
  // gradients are left unspecified).
  Pre pre(const LiveRows& rows, int cols);
  // The GELU over that output plus bias [experts, cols], for experts
  // [first, first + count) (default: all; in turn, each range after its fc1
  // rows are written); a temporary pre-activation is released after the last.
  void gelu(const float* bias, int first = 0, int count = -1);
  // The GELU output as fc2's input, forward and backward.
  GemmInput output() const { return {gemm_only_values(act_), bf16_copy(act16_)}; }
  // da = dL/d(fc1 output) from dg = dL/d(GELU output), and fc1's bias
  // gradient (Backend::gelu_backward: da may be null under bf16, dg given
  // as dg16 and that may be da16).
  // Over experts [first, first + count) (default: all), as gelu().
  void backward(const float* dg, const uint16_t* dg16, float* da, uint16_t* da16, float* dbias,
                int first = 0, int count = -1);
  void collect_activations(ActivationSet& set) {
    set.add(pre_, act_);
    set.add(act16_, slope16_);
  }

 private:
  Backend* be_;
  LiveRows rows_;  // of fc1's output
  int cols_ = 0;
  Tensor pre_, act_;
  Bf16Tensor act16_, slope16_;
  std::optional<Bf16Tensor> temporary_;  // bf16: fc1's output until gelu()
};

}  // namespace vmoe
