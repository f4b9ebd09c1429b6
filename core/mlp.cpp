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
      act_(be) {}

void Mlp::collect_activations(ActivationSet& set) { set.add(pre_, act_); }

void Mlp::forward(const float* x, int64_t images, int tokens, float* y, const Pass& /*pass*/) {
  PhaseScope timed_("dense_mlp");
  rows_ = images * tokens;
  pre_.resize({rows_, fc1_.out()});
  act_.resize({rows_, fc1_.out()});
  fc1_.matmul(*be_, x, rows_, pre_.data());
  be_->bias_gelu(rows_, fc1_.out(), fc1_.bias_value(), pre_.data(), act_.data());
  fc2_.forward(*be_, act_.data(), rows_, y);
}

void Mlp::backward(const float* x, const float* dy, float* dx, Workspace& ws) {
  PhaseScope timed_("dense_mlp");
  float* dhidden = ws.get(Scratch::kHiddenGrad, {rows_, fc1_.out()});
  fc2_.backward(*be_, act_.data(), dy, rows_, dhidden);
  be_->gelu_backward(rows_ * fc1_.out(), pre_.data(), dhidden, dhidden);
  fc1_.backward(*be_, x, dhidden, rows_, dx);
}

}  // namespace vmoe
