// Optimisers over the whole parameter store: Adam with decoupled weight
// decay (pre-training) and SGD with momentum (fine-tuning). Their state has
// the store's layout, so it shards and checkpoints like the parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/param_store.h"
#include "core/schedule.h"

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

  // Applies one update at the rate schedule.at(steps taken) using the store's
  // gradients. The rate and Adam's bias corrections are computed where the
  // update runs, from the step counter kept there (device_step()): no
  // step-dependent scalar is passed from the host.
  void step(const LrSchedule& schedule) {
    queue_update(schedule);
    count_step();
  }
  // step() in its two halves: the device work (what a captured step records)
  // and the host's mirror of the counter (once per step, replays included).
  // grad_scale (device, nullable): the clipping factor, applied as the
  // update reads each gradient (Backend::begin_update).
  void queue_update(const LrSchedule& schedule, const float* grad_scale = nullptr);
  void count_step() { ++step_; }
  // One update at a constant rate.
  void step(float lr) { step(LrSchedule{.base = lr, .decay = Decay::kConstant}); }
  int64_t steps_taken() const { return step_; }
  // Sets both counters (resuming): one copy to the device, outside any step.
  void set_steps_taken(int64_t s);
  // The steps taken, in device memory: read by the step's other kernels that
  // depend on the step (the router's noise).
  const int64_t* device_step() const { return device_step_.data(); }
  // State buffers (Adam: m, v; SGD: momentum), each with the store's layout.
  std::vector<Tensor>& state() { return state_; }
  const OptimizerConfig& config() const { return config_; }

 private:
  OptimizerConfig config_;
  ParamStore* store_;
  Backend* be_;
  int64_t step_ = 0;  // host mirror of device_step_
  DeviceTensor<int64_t> device_step_;
  DeviceTensor<UpdateScalars> scalars_;  // this step's rate and corrections
  std::vector<Tensor> state_;
};

}  // namespace vmoe
