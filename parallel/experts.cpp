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

void ExpertMlps::forward(const float* in, const std::vector<ExpertSegment>& segments,
                         int64_t buffer_rows, float* out) {
  segments_ = segments;
  const int64_t D = dim_, M = hidden_;
  pre_.resize({buffer_rows, M});
  act_.resize({buffer_rows, M});
  for (const ExpertSegment& s : segments_) {
    if (s.rows == 0) continue;
    const int rows = static_cast<int>(s.rows);
    float* pre = pre_.data() + s.begin * M;
    float* act = act_.data() + s.begin * M;
    be_->gemm(Trans::kNo, Trans::kNo, rows, hidden_, dim_, 1.0f, in + s.begin * D, dim_,
              store_->value(w1_) + s.expert * D * M, hidden_, 0.0f, pre, hidden_);
    be_->bias_gelu(s.rows, hidden_, store_->value(b1_) + s.expert * M, pre, act);
    be_->gemm(Trans::kNo, Trans::kNo, rows, dim_, hidden_, 1.0f, act, hidden_,
              store_->value(w2_) + s.expert * M * D, dim_, 0.0f, out + s.begin * D, dim_);
    be_->add_bias(s.rows, dim_, store_->value(b2_) + s.expert * D, out + s.begin * D);
  }
}

void ExpertMlps::backward(const float* in, const float* dout, float* din) {
  const int64_t D = dim_, M = hidden_;
  dact_.resize(pre_.shape());
  for (const ExpertSegment& s : segments_) {
    if (s.rows == 0) continue;
    const int rows = static_cast<int>(s.rows);
    const float* x = in + s.begin * D;
    const float* dy = dout + s.begin * D;
    float* dact = dact_.data() + s.begin * M;
    const float* act = act_.data() + s.begin * M;
    be_->gemm(Trans::kNo, Trans::kYes, rows, hidden_, dim_, 1.0f, dy, dim_,
              store_->value(w2_) + s.expert * M * D, dim_, 0.0f, dact, hidden_);
    be_->gemm(Trans::kYes, Trans::kNo, hidden_, dim_, rows, 1.0f, act, hidden_, dy, dim_, 1.0f,
              store_->grad(w2_) + s.expert * M * D, dim_);
    be_->bias_grad(s.rows, dim_, dy, store_->grad(b2_) + s.expert * D);
    be_->gelu_backward(s.rows * M, pre_.data() + s.begin * M, dact, dact);
    be_->gemm(Trans::kYes, Trans::kNo, dim_, hidden_, rows, 1.0f, x, dim_, dact, hidden_, 1.0f,
              store_->grad(w1_) + s.expert * D * M, hidden_);
    be_->bias_grad(s.rows, hidden_, dact, store_->grad(b1_) + s.expert * M);
    be_->gemm(Trans::kNo, Trans::kYes, rows, dim_, hidden_, 1.0f, dact, hidden_,
              store_->value(w1_) + s.expert * D * M, hidden_, 0.0f, din + s.begin * D, dim_);
  }
}

}  // namespace vmoe
