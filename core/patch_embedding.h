// Image -> token embeddings: non-overlapping patches projected by one GEMM
// (the kernel is a P x P x C x D convolution kernel seen as [P*P*C, D]),
// plus an optional class token, plus a learned position embedding.
#pragma once

#include <string>

#include "core/linear.h"
#include "core/tensor.h"

namespace vmoe {

struct ImageShape {
  int height = 0, width = 0, channels = 0;
};

class PatchEmbedding {
 public:
  PatchEmbedding(Backend& be, ParamStore& store, ImageShape image, int patch, int dim,
                 bool class_token);

  int patches() const { return (image_.height / patch_) * (image_.width / patch_); }
  int tokens() const { return patches() + (class_token_ ? 1 : 0); }

  // tokens[B * T, D] from images[B, H, W, C].
  void forward(const float* images, int64_t batch, float* tokens);
  // Parameter gradients from dtokens (images get no gradient).
  void backward(const float* dtokens);

 private:
  Backend* be_;
  ParamStore* store_;
  ImageShape image_;
  int patch_, dim_;
  bool class_token_;
  ParamId kernel_, bias_, cls_ = -1, pos_;
  int64_t batch_ = 0;
  Tensor patches_;  // [B * patches, P*P*C]
  Bf16Tensor patches16_;  // their bf16 copy under bf16 (both GEMMs read it)
  Tensor proj_;     // [B * patches, D]; reused for its gradient in backward
};

}  // namespace vmoe
