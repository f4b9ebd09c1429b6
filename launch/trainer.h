// One training run's model, optimiser and step logic, independent of where
// batches come from: vmoe_train feeds it the loader's batches, the benchmark
// feeds it synthetic ones, so both time the same code.
#pragma once

#include <cstdint>
#include <memory>

#include "core/backend.h"
#include "core/loss.h"
#include "core/optimizer.h"
#include "core/param_store.h"
#include "core/schedule.h"
#include "core/vit.h"

namespace vmoe {

struct TrainerOptions {
  ViTConfig model;
  OptimizerConfig optimizer;
  LrSchedule schedule;
  uint64_t seed = 0;
  int64_t global_batch = 0;  // the loss is the mean over the global batch
};

struct StepResult {
  double loss = 0;       // classification loss, mean over the batch
  double aux_loss = 0;   // weighted auxiliary losses (MoE)
  double grad_norm = 0;  // before clipping
  double lr = 0;
};

struct EvalResult {
  int64_t count = 0;    // real (unmasked) examples
  int64_t correct = 0;  // precision@1 hits
  double loss_sum = 0;
  double precision_at_1() const { return count ? static_cast<double>(correct) / count : 0.0; }
  double mean_loss() const { return count ? loss_sum / count : 0.0; }
  EvalResult& operator+=(const EvalResult& o);
};

class Trainer {
 public:
  Trainer(Backend& be, const TrainerOptions& options);

  // One optimiser step on a batch of host images [rows, H, W, C] in [-1, 1].
  StepResult train_step(const float* images, const LossTargets& targets);
  // Loss and precision@1 of a batch (masked rows ignored).
  EvalResult evaluate(const float* images, const LossTargets& targets);

  int64_t step() const { return optimizer_->steps_taken(); }
  ViT& model() { return *model_; }
  ParamStore& params() { return params_; }
  Optimizer& optimizer() { return *optimizer_; }
  const TrainerOptions& options() const { return options_; }

 private:
  void upload_images(const float* images, int64_t rows);

  Backend* be_;
  TrainerOptions options_;
  ParamStore params_;
  std::unique_ptr<ViT> model_;
  std::unique_ptr<Optimizer> optimizer_;
  ClassificationLoss loss_;
  Tensor images_, dlogits_;
  std::vector<float> host_logits_;
};

}  // namespace vmoe
