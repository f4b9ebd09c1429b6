// Multi-head self-attention with a fused q|k|v projection [D, 3D], in one
// of two layouts (Backend::attention_pad_to()):
//
// - Strided (0, the CPU's default): heads are never copied; the head h of
//   image b is a strided view (row stride 3D) into the projection output, and
//   the batched GEMMs run over (images, heads) with two stride levels. A row
//   of scores is T values in a row of Backend::scores_ld(T) >= T (packed on
//   the CPU, 32-byte aligned on the GPU); a gap is set to zero.
// - Head-major (n > 0; 8, the GPU's default): q, k, v are packed [3, B, H,
//   Tp, hd] with tokens zero-padded to Tp, a multiple of n (the q|k|v bias
//   added on the way), and every batched GEMM is one launch over B*H
//   matrices with sizes and strides that tensor-core kernels take (strided,
//   T = 197 ran on cutlass_75 align1 kernels). Costs the packing passes and
//   Tp/T more attention work; the results are those of the strided layout
//   (the padding adds zeros). On the CPU it measured 3-5% slower.
#pragma once

#include <cmath>
#include <optional>
#include <string>

#include "core/linear.h"
#include "core/tensor.h"

namespace vmoe {

class ActivationSet;
class Workspace;

// The CUDA backend's default layout: head-major, tokens padded to a multiple
// of 8 (Backend::set_attention_pad_to).
constexpr int kGpuAttentionPadTo = 8;

class SelfAttention {
 public:
  SelfAttention(Backend& be, ParamStore& store, const std::string& name, int dim, int heads);

  // y[B*T, D] = attention(x[B*T, D]); saves q|k|v, the probabilities and the
  // context (and their bf16 copies under bf16: every GEMM input is written in
  // bf16 by the op that produces it, or converted once).
  void forward(GemmInput x, int64_t images, int tokens, float* y);
  // dx = dL/dx (overwrites); parameter gradients accumulate.
  // dy may carry its bf16 copy (FeedForward::backward's rule).
  void backward(GemmInput x, GemmInput dy, float* dx, Workspace& ws);
  // What forward saves (see core/activation_pool.h).
  void collect_activations(ActivationSet& set);

 private:
  // Scores are scaled by 1 / sqrt(head_dim) inside the softmax.
  float score_scale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim_)); }
  // Backend::attention_pad_to() > 0: heads packed head-major, tokens padded.
  int padded_tokens() const;
  void forward_head_major(GemmInput x, float* y);
  // Where forward's scores go and its probabilities [shape] are kept: under
  // bf16 the probabilities as their copy alone (GEMMs read it, and the
  // softmax's backward reads it widened), the scores in scores_only, a
  // temporary; otherwise the softmax runs in place in probs_.
  struct Probabilities {
    float* scores;
    float* probs;  // null: the copy alone
    uint16_t* probs16;
  };
  Probabilities probabilities(const Shape& shape, std::optional<Tensor>& scores_only);
  void backward_head_major(GemmInput x, GemmInput dy, float* dx, Workspace& ws);

  Backend* be_;
  int dim_, heads_, head_dim_;
  Linear qkv_, out_;
  int64_t images_ = 0;
  int tokens_ = 0;
  Tensor qkv_act_;  // [B*T, 3D]; head-major: [3, B, H, Tp, hd] (not under bf16)
  Tensor probs_;    // [B, H, T, Backend::scores_ld(T)]; head-major: [B, H, Tp, Tp] (not under bf16)
  Tensor context_;  // [B*T, D], heads side by side
  Bf16Tensor qkv16_, probs16_, context16_;  // bf16 copies, under bf16
};

}  // namespace vmoe
