// A pre-LN transformer encoder block:
//   mid = x + Attention(LN1(x));  y = mid + FeedForward(LN2(mid))
#pragma once

#include <memory>
#include <string>

#include "core/attention.h"
#include "core/feed_forward.h"
#include "core/linear.h"
#include "core/tensor.h"

namespace vmoe {

class TransformerBlock {
 public:
  TransformerBlock(Backend& be, ParamStore& store, const std::string& name, int dim, int heads,
                   float eps, std::unique_ptr<FeedForward> feed_forward);

  // y = block(x), both [images * tokens, dim]; x must stay alive until backward.
  void forward(const float* x, int64_t images, int tokens, float* y, const Pass& pass);
  // dresid holds dL/dy on entry and dL/dx on exit. dresid16: dL/dy's bf16
  // copy, or null (then converted where a GEMM reads it). Returns dL/dx's
  // copy, written by the LayerNorm backward that finishes it into the
  // workspace's kOutputGrad slot (null under fp32); it holds until that
  // slot's next use, so the next block down may take it as its dresid16.
  const uint16_t* backward(const float* x, float* dresid, Workspace& ws,
                           const uint16_t* dresid16 = nullptr);
  // Everything forward keeps for backward (but x), the sublayers' included, in
  // the same order for every block (see core/activation_pool.h).
  void collect_activations(ActivationSet& set);

  FeedForward& feed_forward() { return *ff_; }
  const FeedForward& feed_forward() const { return *ff_; }

 private:
  // A norm's fp32 output, resized, or null where only GEMMs read it and its
  // bf16 copy alone is kept (gemm_only_values).
  float* norm_values(Tensor& norm, bool only_gemms_read);

  Backend* be_;
  int dim_;
  LayerNorm ln1_, ln2_;
  SelfAttention attention_;
  std::unique_ptr<FeedForward> ff_;
  int64_t rows_ = 0;
  Tensor norm1_, mean1_, rstd1_;  // LN1 output and statistics
  Tensor mid_;                    // residual stream between the two halves
  Tensor norm2_, mean2_, rstd2_;
  Bf16Tensor norm1_16_, norm2_16_;  // bf16 copies of the LN outputs (GEMM inputs), under bf16
};

}  // namespace vmoe
