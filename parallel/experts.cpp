#include "parallel/experts.h"

namespace vmoe {
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

ExpertMlps::Batch ExpertMlps::batch(int64_t a, int64_t b, int64_t c, int64_t row_a, int64_t row_b,
                                    int64_t row_c, LiveAxis axis, Experts range) {
  const BatchLevel experts{.count = range.count, .a = a, .b = b, .c = c};
  const int64_t first = range.first;
  if (rows_.live == nullptr)
    return {static_cast<int>(rows_.rows), experts, {}, first * a, first * b, first * c};
  // The range's live counts, [parts, range.count] as BatchLevel::live reads them.
  const int32_t* live = rows_.live;
  if (range.count != local_) {
    range_live_.resize(static_cast<size_t>(rows_.parts) * range.count);
    for (int s = 0; s < rows_.parts; ++s)
      for (int e = 0; e < range.count; ++e)
        range_live_[static_cast<size_t>(s) * range.count + e] =
            rows_.live[s * local_ + range.first + e];
    live = range_live_.data();
  }
  const int64_t seg = rows_.part_rows();
  return {static_cast<int>(seg),
          {.count = rows_.parts,
           .a = seg * row_a,
           .b = seg * row_b,
           .c = seg * row_c,
           .live = live,
           .live_axis = axis},
          experts,
          first * a,
          first * b,
          first * c};
}

std::vector<ExpertMlps::Experts> ExpertMlps::ranges() const {
  // Packed buffers (the CPU): one expert at a time through all of a pass's
  // ops, so its hidden rows (~1 MiB) are still in cache for the next op
  // instead of coming back from DRAM after every expert's (~+1.5% of the
  // default V-MoE's step on Zen 4). The same calls in another order: the
  // same bits.
  if (rows_.live == nullptr) return {{0, local_}};
  std::vector<Experts> one_each;
  for (int e = 0; e < local_; ++e) one_each.push_back({e, 1});
  return one_each;
}

void ExpertMlps::forward(GemmInput input, int64_t rows, float* out, const int32_t* live,
                         int sources) {
  const int64_t D = dim_, M = hidden_, R = rows;
  VMOE_ASSERT(rows % sources == 0);
  rows_ = {local_, rows, live, sources};
  // Under bf16 an input without a copy gets one, kept for backward.
  const GemmInput in =
      input.bf16 != nullptr ? input : with_bf16_copy(in16_, input.f32, {local_ * R, D});
  const GeluHidden::Pre pre = gelu_.pre(rows_, hidden_);
  for (const Experts range : ranges()) {
    const Batch fc1 = batch(R * D, D * M, R * M, D, 0, M, LiveAxis::kM, range);
    if (pre.bf16 != nullptr) {
      be_->gemm_batched_to_bf16(Trans::kNo, Trans::kNo, fc1.rows, hidden_, dim_, 1.0f,
                                in.offset(fc1.a0), dim_, store_->weight(w1_).offset(fc1.b0),
                                hidden_, pre.bf16 + fc1.c0, hidden_, fc1.outer, fc1.inner);
    } else {
      be_->gemm_batched(Trans::kNo, Trans::kNo, fc1.rows, hidden_, dim_, 1.0f, in.offset(fc1.a0),
                        dim_, store_->weight(w1_).offset(fc1.b0), hidden_, 0.0f, pre.f32 + fc1.c0,
                        hidden_, fc1.outer, fc1.inner);
    }
    gelu_.gelu(store_->value(b1_), range.first, range.count);
    const Batch fc2 = batch(R * M, M * D, R * D, M, 0, D, LiveAxis::kM, range);
    be_->gemm_batched(Trans::kNo, Trans::kNo, fc2.rows, dim_, hidden_, 1.0f,
                      gelu_.output().offset(fc2.a0), hidden_, store_->weight(w2_).offset(fc2.b0),
                      dim_, 0.0f, out + fc2.c0, dim_, fc2.outer, fc2.inner);
    rows_.for_each(
        [&](int experts, int expert, int64_t row, int64_t rows) {
          be_->expert_add_bias(experts, rows, dim_, store_->value(b2_) + expert * D, out + row * D);
        },
        range.first, range.count);
  }
}

void ExpertMlps::backward(GemmInput input, GemmInput dout_in, float* din, Workspace& ws) {
  const float* dout = dout_in.f32;
  const int64_t D = dim_, M = hidden_, R = rows_.rows;
  const Shape hidden = {local_ * R, M};
  uint16_t* dact16 = bf16_copy(dact16_, hidden);
  // The hidden gradient: under bf16 its copy alone unless the GEMMs convert
  // fp32 (Mlp's rule); the gradient into the GELU written as bf16 there too.
  float* dact = gemm_only_values(dact_, hidden);
  // dout feeds two GEMMs: converted once, unless it came with its copy.
  const GemmInput dy = ws.shared_input(Scratch::kExpertOutGrad, dout_in, {local_ * R, D});
  // The input's copy: as given to forward, else the one forward made.
  const GemmInput in = input.bf16 != nullptr ? input : GemmInput{input.f32, in16_.data()};
  for (const Experts range : ranges()) {
    const Batch dhidden = batch(R * D, M * D, R * M, D, 0, M, LiveAxis::kM, range);
    if (dact16 != nullptr) {
      be_->gemm_batched_to_bf16(Trans::kNo, Trans::kYes, dhidden.rows, hidden_, dim_, 1.0f,
                                dy.offset(dhidden.a0), dim_, store_->weight(w2_).offset(dhidden.b0),
                                dim_, dact16 + dhidden.c0, hidden_, dhidden.outer, dhidden.inner);
    } else {
      be_->gemm_batched(Trans::kNo, Trans::kYes, dhidden.rows, hidden_, dim_, 1.0f,
                        dy.offset(dhidden.a0), dim_, store_->weight(w2_).offset(dhidden.b0), dim_,
                        0.0f, dact + dhidden.c0, hidden_, dhidden.outer, dhidden.inner);
    }
    const Batch dw2 = batch(R * M, R * D, M * D, M, D, 0, LiveAxis::kK, range);
    be_->gemm_batched(Trans::kYes, Trans::kNo, hidden_, dim_, dw2.rows, 1.0f,
                      gelu_.output().offset(dw2.a0), hidden_, dy.offset(dw2.b0), dim_, 1.0f,
                      store_->grad(w2_) + dw2.c0, dim_, dw2.outer, dw2.inner);
    rows_.for_each(
        [&](int experts, int expert, int64_t row, int64_t rows) {
          be_->expert_bias_grad(experts, rows, dim_, dout + row * D,
                                store_->grad(b2_) + expert * D);
        },
        range.first, range.count);
    // fc1's bias gradient in the GELU's backward pass.
    gelu_.backward(dact, dact16, dact, dact16, store_->grad(b1_), range.first, range.count);
    const Batch dw1 = batch(R * D, R * M, D * M, D, M, 0, LiveAxis::kK, range);
    be_->gemm_batched(Trans::kYes, Trans::kNo, dim_, hidden_, dw1.rows, 1.0f, in.offset(dw1.a0),
                      dim_, GemmInput{dact, dact16}.offset(dw1.b0), hidden_, 1.0f,
                      store_->grad(w1_) + dw1.c0, hidden_, dw1.outer, dw1.inner);
    const Batch dx = batch(R * M, D * M, R * D, M, 0, D, LiveAxis::kM, range);
    be_->gemm_batched(Trans::kNo, Trans::kYes, dx.rows, dim_, hidden_, 1.0f,
                      GemmInput{dact, dact16}.offset(dx.a0), hidden_,
                      store_->weight(w1_).offset(dx.b0), hidden_, 0.0f, din + dx.c0, dim_, dx.outer,
                      dx.inner);
  }
}

}  // namespace vmoe
