#include "core/mlp.h"

#include "core/activation_pool.h"
#include "core/workspace.h"
#include "core/phase_timer.h"

namespace vmoe {

Mlp::Mlp(Backend& be, ParamStore& store, const std::string& name, int dim, int hidden)
    : be_(&be),
      fc1_(store, name + "/fc1", dim, hidden),
      fc2_(store, name + "/fc2", hidden, dim),
      pre_(be),
      act_(be),
      act16_(be) {}

void Mlp::collect_activations(ActivationSet& set) {
  set.add(pre_, act_);
  set.add(act16_);
}

void Mlp::forward(GemmInput x, int64_t images, int tokens, float* y, const Pass& /*pass*/) {
  PhaseScope timed_("dense_mlp");
  rows_ = images * tokens;
  pre_.resize({rows_, fc1_.out()});
  uint16_t* act16 = bf16_copy(act16_, {rows_, fc1_.out()});
  // Only GEMMs read the GELU output: under bf16 its copy is all they need.
  float* act = nullptr;
  if (!be_->bf16_copies_suffice()) {
    act_.resize({rows_, fc1_.out()});
    act = act_.data();
  }
  fc1_.matmul(*be_, x, rows_, pre_.data());
  be_->bias_gelu(rows_, fc1_.out(), fc1_.bias_value(), pre_.data(), act, act16);
  fc2_.forward(*be_, {act, act16}, rows_, y);
}

void Mlp::backward(GemmInput x, const float* dy, float* dx, Workspace& ws) {
  PhaseScope timed_("dense_mlp");
  const Shape hidden = {rows_, fc1_.out()};
  float* dhidden = ws.get(Scratch::kHiddenGrad, hidden);
  uint16_t* dhidden16 = ws.get_bf16(Scratch::kHiddenGrad, hidden);
  const GemmInput dy_in = ws.shared_input(Scratch::kOutputGrad, dy, {rows_, fc2_.out()});
  const float* act = be_->bf16_copies_suffice() ? nullptr : act_.data();
  fc2_.backward(*be_, {act, act16_.data()}, dy_in, rows_, dhidden);
  be_->gelu_backward(rows_ * fc1_.out(), pre_.data(), dhidden, dhidden, dhidden16);
  fc1_.backward(*be_, x, {dhidden, dhidden16}, rows_, dx);
}

}  // namespace vmoe
