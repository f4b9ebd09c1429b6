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
      pre_(be),
      act_(be),
      dact_(be) {
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

void ExpertMlps::forward(const float* in, int64_t rows, float* out) {
  const int64_t D = dim_, M = hidden_, R = rows;
  rows_ = rows;
  pre_.resize({local_ * R, M});
  act_.resize({local_ * R, M});
  const int r = static_cast<int>(R);
  be_->gemm_batched(Trans::kNo, Trans::kNo, r, hidden_, dim_, 1.0f, in, dim_,
                    store_->value(w1_), hidden_, 0.0f, pre_.data(), hidden_,
                    per_expert(local_, R * D, D * M, R * M), {});
  for (int l = 0; l < local_; ++l)
    be_->bias_gelu(R, hidden_, store_->value(b1_) + l * M, pre_.data() + l * R * M,
                   act_.data() + l * R * M);
  be_->gemm_batched(Trans::kNo, Trans::kNo, r, dim_, hidden_, 1.0f, act_.data(), hidden_,
                    store_->value(w2_), dim_, 0.0f, out, dim_,
                    per_expert(local_, R * M, M * D, R * D), {});
  for (int l = 0; l < local_; ++l) be_->add_bias(R, dim_, store_->value(b2_) + l * D, out + l * R * D);
}

void ExpertMlps::backward(const float* in, const float* dout, float* din) {
  const int64_t D = dim_, M = hidden_, R = rows_;
  const int r = static_cast<int>(R);
  dact_.resize(pre_.shape());
  float* dact = dact_.data();
  be_->gemm_batched(Trans::kNo, Trans::kYes, r, hidden_, dim_, 1.0f, dout, dim_,
                    store_->value(w2_), dim_, 0.0f, dact, hidden_,
                    per_expert(local_, R * D, M * D, R * M), {});
  be_->gemm_batched(Trans::kYes, Trans::kNo, hidden_, dim_, r, 1.0f, act_.data(), hidden_, dout,
                    dim_, 1.0f, store_->grad(w2_), dim_, per_expert(local_, R * M, R * D, M * D),
                    {});
  for (int l = 0; l < local_; ++l)
    be_->bias_grad(R, dim_, dout + l * R * D, store_->grad(b2_) + l * D);
  be_->gelu_backward(local_ * R * M, pre_.data(), dact, dact);
  be_->gemm_batched(Trans::kYes, Trans::kNo, dim_, hidden_, r, 1.0f, in, dim_, dact, hidden_, 1.0f,
                    store_->grad(w1_), hidden_, per_expert(local_, R * D, R * M, D * M), {});
  for (int l = 0; l < local_; ++l)
    be_->bias_grad(R, hidden_, dact + l * R * M, store_->grad(b1_) + l * M);
  be_->gemm_batched(Trans::kNo, Trans::kYes, r, dim_, hidden_, 1.0f, dact, hidden_,
                    store_->value(w1_), hidden_, 0.0f, din, dim_,
                    per_expert(local_, R * M, D * M, R * D), {});
}

}  // namespace vmoe
