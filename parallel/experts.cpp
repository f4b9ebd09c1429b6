#include "parallel/experts.h"

namespace vmoe {
namespace {

// One batched GEMM over the local experts: expert l's rows of A and C and
// its weight matrix B are `a`, `c` and `b` elements after expert l-1's.
BatchLevel per_expert(int experts, int64_t a, int64_t b, int64_t c) {
  return {.count = experts, .a = a, .b = b, .c = c};
}
}  // namespace

ExpertMlps::ExpertMlps(Backend& be, ParamStore& store, const std::string& name, int total_experts,
                       int first_expert, int local_experts, int dim, int hidden)
    : be_(&be),
      store_(&store),
      local_(local_experts),
      dim_(dim),
      hidden_(hidden),
      gelu_(be),
      dact_(be),
      dact16_(be),
      in16_(be) {
  auto add = [&](const std::string& n, Shape shape, bool kernel, int64_t fan_in, int64_t fan_out) {
    return store.add({.name = name + "/" + n,
                      .shape = shape,
                      .init = kernel ? Init::kXavierUniform : Init::kZeros,
                      .fan_in = fan_in,
                      .fan_out = fan_out,
                      .region = Region::kExpert,
                      .weight_decay = kernel,
                      .global_offset = first_expert,
                      .global_rows = total_experts});
  };
  w1_ = add("fc1/kernel", {local_experts, dim, hidden}, true, dim, hidden);
  b1_ = add("fc1/bias", {local_experts, hidden}, false, 0, 0);
  w2_ = add("fc2/kernel", {local_experts, hidden, dim}, true, hidden, dim);
  b2_ = add("fc2/bias", {local_experts, dim}, false, 0, 0);
}

void ExpertMlps::forward(GemmInput input, int64_t rows, float* out) {
  const int64_t D = dim_, M = hidden_, R = rows;
  rows_ = rows;
  // Under bf16 an input without a copy gets one, kept for backward.
  const GemmInput in =
      input.bf16 != nullptr ? input : with_bf16_copy(in16_, input.f32, {local_ * R, D});
  const int r = static_cast<int>(R);
  const GeluHidden::Pre pre = gelu_.pre(local_, R, hidden_);
  const BatchLevel experts = per_expert(local_, R * D, D * M, R * M);
  if (pre.bf16 != nullptr) {
    be_->gemm_batched_to_bf16(Trans::kNo, Trans::kNo, r, hidden_, dim_, 1.0f, in, dim_,
                              store_->weight(w1_), hidden_, pre.bf16, hidden_, experts, {});
  } else {
    be_->gemm_batched(Trans::kNo, Trans::kNo, r, hidden_, dim_, 1.0f, in, dim_, store_->weight(w1_),
                      hidden_, 0.0f, pre.f32, hidden_, experts, {});
  }
  gelu_.gelu(store_->value(b1_));
  be_->gemm_batched(Trans::kNo, Trans::kNo, r, dim_, hidden_, 1.0f, gelu_.output(), hidden_,
                    store_->weight(w2_), dim_, 0.0f, out, dim_,
                    per_expert(local_, R * M, M * D, R * D), {});
  be_->expert_add_bias(local_, R, dim_, store_->value(b2_), out);
}

void ExpertMlps::backward(GemmInput input, GemmInput dout_in, float* din, Workspace& ws) {
  const float* dout = dout_in.f32;
  const int64_t D = dim_, M = hidden_, R = rows_;
  const int r = static_cast<int>(R);
  const Shape hidden = {local_ * R, M};
  uint16_t* dact16 = bf16_copy(dact16_, hidden);
  // The hidden gradient: under bf16 its copy alone unless the GEMMs convert
  // fp32 (Mlp's rule); the gradient into the GELU written as bf16 there too.
  float* dact = gemm_only_values(dact_, hidden);
  // dout feeds two GEMMs: converted once, unless it came with its copy.
  const GemmInput dy = ws.shared_input(Scratch::kExpertOutGrad, dout_in, {local_ * R, D});
  // The input's copy: as given to forward, else the one forward made.
  const GemmInput in = input.bf16 != nullptr ? input : GemmInput{input.f32, in16_.data()};
  const BatchLevel experts = per_expert(local_, R * D, M * D, R * M);
  if (dact16 != nullptr) {
    be_->gemm_batched_to_bf16(Trans::kNo, Trans::kYes, r, hidden_, dim_, 1.0f, dy, dim_,
                              store_->weight(w2_), dim_, dact16, hidden_, experts, {});
  } else {
    be_->gemm_batched(Trans::kNo, Trans::kYes, r, hidden_, dim_, 1.0f, dy, dim_,
                      store_->weight(w2_), dim_, 0.0f, dact, hidden_, experts, {});
  }
  be_->gemm_batched(Trans::kYes, Trans::kNo, hidden_, dim_, r, 1.0f, gelu_.output(), hidden_, dy,
                    dim_, 1.0f, store_->grad(w2_), dim_, per_expert(local_, R * M, R * D, M * D),
                    {});
  be_->expert_bias_grad(local_, R, dim_, dout, store_->grad(b2_));
  // fc1's bias gradient in the GELU's backward pass.
  gelu_.backward(dact, dact16, dact, dact16, store_->grad(b1_));
  be_->gemm_batched(Trans::kYes, Trans::kNo, dim_, hidden_, r, 1.0f, in, dim_, {dact, dact16},
                    hidden_, 1.0f, store_->grad(w1_), hidden_,
                    per_expert(local_, R * D, R * M, D * M), {});
  be_->gemm_batched(Trans::kNo, Trans::kYes, r, dim_, hidden_, 1.0f, {dact, dact16}, hidden_,
                    store_->weight(w1_), hidden_, 0.0f, din, dim_,
                    per_expert(local_, R * M, D * M, R * D), {});
}

}  // namespace vmoe
