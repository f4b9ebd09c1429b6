#include "core/mlp.h"

#include "core/activation_pool.h"
#include "core/workspace.h"
#include "core/phase_timer.h"

namespace vmoe {

Mlp::Mlp(Backend& be, ParamStore& store, const std::string& name, int dim, int hidden)
    : be_(&be),
      fc1_(store, name + "/fc1", dim, hidden),
      fc2_(store, name + "/fc2", hidden, dim),
      gelu_(be) {}

void Mlp::collect_activations(ActivationSet& set) {
  gelu_.collect_activations(set);
}

void Mlp::forward(GemmInput x, int64_t images, int tokens, float* y, const Pass& /*pass*/) {
  PhaseScope timed_("dense_mlp");
  rows_ = images * tokens;
  const GeluHidden::Pre pre = gelu_.pre({.experts = 1, .rows = rows_}, fc1_.out());
  fc1_.matmul(*be_, x, rows_, pre.f32, pre.bf16);
  gelu_.gelu(fc1_.bias_value());
  fc2_.forward(*be_, gelu_.output(), rows_, y);
}

void Mlp::backward(GemmInput x, GemmInput dy, float* dx, Workspace& ws) {
  PhaseScope timed_("dense_mlp");
  const Shape hidden = {rows_, fc1_.out()};
  uint16_t* dhidden16 = ws.get_bf16(Scratch::kHiddenGrad, hidden);
  // Under bf16 only GEMMs read the hidden gradient (fc1's input): its copy
  // alone is written, unless the GEMMs convert fp32 (the reference).
  float* dhidden = be_->bf16_copies_suffice() ? nullptr : ws.get(Scratch::kHiddenGrad, hidden);
  const GemmInput dy_in = ws.shared_input(Scratch::kOutputGrad, dy, {rows_, fc2_.out()});
  // Under bf16 the gradient into the GELU is written as bf16 too (only the
  // GELU's backward reads it, into a bf16 gradient), in the same storage.
  if (dhidden16 != nullptr)
    fc2_.backward_to_bf16(*be_, gelu_.output(), dy_in, rows_, dhidden16);
  else
    fc2_.backward(*be_, gelu_.output(), dy_in, rows_, dhidden);
  // fc1's bias gradient in the GELU's backward pass.
  gelu_.backward(dhidden, dhidden16, dhidden, dhidden16, fc1_.bias_grad());
  fc1_.matmul_backward(*be_, x, {dhidden, dhidden16}, rows_, dx);
}

}  // namespace vmoe
