#include "parallel/experts.h"

namespace vmoe {

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

void ExpertMlps::forward(const float* in, int sources, int64_t rows, float* out) {
  sources_ = sources;
  rows_ = rows;
  const int64_t D = dim_, M = hidden_, L = local_, R = rows;
  pre_.resize({sources, L, R, M});
  act_.resize({sources, L, R, M});
  const int r = static_cast<int>(R);
  // pre[s, e] = in[s, e] W1[e]; batched over (source, expert)
  be_->gemm_batched(Trans::kNo, Trans::kNo, r, hidden_, dim_, 1.0f, in, dim_, store_->value(w1_),
                    hidden_, 0.0f, pre_.data(), hidden_, {sources, L * R * D, 0, L * R * M},
                    {L, R * D, D * M, R * M});
  for (int s = 0; s < sources; ++s) {
    for (int e = 0; e < local_; ++e) {
      const int64_t block = (s * L + e) * R * M;
      be_->bias_gelu(R, hidden_, store_->value(b1_) + e * M, pre_.data() + block,
                     act_.data() + block);
    }
  }
  be_->gemm_batched(Trans::kNo, Trans::kNo, r, dim_, hidden_, 1.0f, act_.data(), hidden_,
                    store_->value(w2_), dim_, 0.0f, out, dim_, {sources, L * R * M, 0, L * R * D},
                    {L, R * M, M * D, R * D});
  for (int s = 0; s < sources; ++s)
    for (int e = 0; e < local_; ++e)
      be_->add_bias(R, dim_, store_->value(b2_) + e * D, out + (s * L + e) * R * D);
}

void ExpertMlps::backward(const float* in, const float* dout, float* din) {
  const int64_t D = dim_, M = hidden_, L = local_, R = rows_;
  const int r = static_cast<int>(R);
  dact_.resize({sources_, L, R, M});
  // dact = dout W2^T
  be_->gemm_batched(Trans::kNo, Trans::kYes, r, hidden_, dim_, 1.0f, dout, dim_,
                    store_->value(w2_), dim_, 0.0f, dact_.data(), hidden_,
                    {sources_, L * R * D, 0, L * R * M}, {L, R * D, M * D, R * M});
  // Weight gradients: one batched call per source, so no two GEMMs of one
  // call accumulate into the same expert's gradient.
  for (int s = 0; s < sources_; ++s) {
    be_->gemm_batched(Trans::kYes, Trans::kNo, hidden_, dim_, r, 1.0f, act_.data() + s * L * R * M,
                      hidden_, dout + s * L * R * D, dim_, 1.0f, store_->grad(w2_), dim_, {},
                      {L, R * M, R * D, M * D});
    for (int e = 0; e < local_; ++e)
      be_->bias_grad(R, dim_, dout + (s * L + e) * R * D, store_->grad(b2_) + e * D);
  }
  be_->gelu_backward(sources_ * L * R * M, pre_.data(), dact_.data(), dact_.data());
  for (int s = 0; s < sources_; ++s) {
    be_->gemm_batched(Trans::kYes, Trans::kNo, dim_, hidden_, r, 1.0f, in + s * L * R * D, dim_,
                      dact_.data() + s * L * R * M, hidden_, 1.0f, store_->grad(w1_), hidden_, {},
                      {L, R * D, R * M, D * M});
    for (int e = 0; e < local_; ++e)
      be_->bias_grad(R, hidden_, dact_.data() + (s * L + e) * R * M, store_->grad(b1_) + e * M);
  }
  // din = dact W1^T
  be_->gemm_batched(Trans::kNo, Trans::kYes, r, dim_, hidden_, 1.0f, dact_.data(), hidden_,
                    store_->value(w1_), hidden_, 0.0f, din, dim_,
                    {sources_, L * R * M, 0, L * R * D}, {L, R * M, D * M, R * D});
}

}  // namespace vmoe
