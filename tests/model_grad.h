// Whole-model gradient check: the objective is the mean cross-entropy of a
// batch plus the model's auxiliary losses; every parameter's gradient is
// compared with central finite differences at sampled coordinates.
#pragma once

#include <functional>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/loss.h"
#include "core/vit.h"
#include "tests/test_util.h"

namespace vmoe::testing {

struct ModelGradCase {
  int64_t batch = 0;
  std::vector<float> images = {};
  std::vector<int32_t> labels = {};
  Pass pass{.training = true};
  std::function<void()> before_forward = nullptr;  // e.g. hand the router this batch's super-classes
  int samples = 12;
};

inline void check_model_gradients(CpuBackend& be, ParamStore& store, ViT& model,
                                  const ModelGradCase& c) {
  const int classes = model.config().num_classes;
  Tensor x(be, {static_cast<int64_t>(c.images.size())}), dlogits(be, {c.batch * classes});
  x.copy_from_host(c.images);
  ClassificationLoss loss(be, classes, false);
  const LossTargets targets{c.batch, c.labels.data(), nullptr, nullptr};
  const float scale = 1.0f / static_cast<float>(c.batch);
  auto forward = [&] {
    if (c.before_forward) c.before_forward();
    model.forward(x.data(), c.batch, c.pass);
  };
  auto objective = [&] {
    forward();
    return loss.forward(model.logits(), targets) * scale + model.aux_loss();
  };
  forward();
  store.zero_grads();
  loss.forward_backward(model.logits(), targets, scale, dlogits.data());
  model.backward(dlogits.data());
  GradCheck check;
  check.samples = c.samples;
  check.run_parameters(be, store, objective);
}

}  // namespace vmoe::testing
