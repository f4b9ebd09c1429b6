// Optimisers over the whole parameter store: Adam with decoupled weight
// decay (pre-training) and SGD with momentum (fine-tuning). Their state has
// the store's layout, so it shards and checkpoints like the parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/param_store.h"

namespace vmoe {

enum class OptimizerKind { kAdam, kSgd };

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kAdam;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float momentum = 0.9f;       // SGD
  float weight_decay = 0.0f;   // decoupled: p -= lr * wd * p, kernels only
  float grad_clip_norm = 0.0f; // 0 = no clipping
};

OptimizerKind parse_optimizer(const std::string& name);  // "adam" | "sgd"

class Optimizer {
 public:
  Optimizer(const OptimizerConfig& config, ParamStore& store);

  // Applies one update with learning rate `lr` using the store's gradients.
  void step(float lr);
  int64_t steps_taken() const { return step_; }
  void set_steps_taken(int64_t s) { step_ = s; }
  // State buffers (Adam: m, v; SGD: momentum), each with the store's layout.
  std::vector<Tensor>& state() { return state_; }
  const OptimizerConfig& config() const { return config_; }

 private:
  OptimizerConfig config_;
  ParamStore* store_;
  Backend* be_;
  int64_t step_ = 0;
  std::vector<Tensor> state_;
};

}  // namespace vmoe
