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
#include "parallel/moe_config.h"

namespace vmoe {

struct TrainerOptions {
  ViTConfig model;
  MoeConfig moe;  // disabled (no layers) for a dense ViT
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
  int64_t choices = 0;            // MoE: expert choices routed (all layers)
  int64_t dropped = 0;            // MoE: of which over capacity
  int64_t superclass_hits = 0;    // image router: top choice == super-class
  std::vector<int64_t> confusion;  // [label * classes + prediction], single-label data
  double precision_at_1() const { return count ? static_cast<double>(correct) / count : 0.0; }
  double mean_loss() const { return count ? loss_sum / count : 0.0; }
  double dropped_fraction() const { return choices ? static_cast<double>(dropped) / choices : 0.0; }
  EvalResult& operator+=(const EvalResult& o);
  double superclass_accuracy() const {
    return count ? static_cast<double>(superclass_hits) / count : 0.0;
  }
};

class Trainer {
 public:
  Trainer(Backend& be, const TrainerOptions& options);

  // One optimiser step on a batch of host images [rows, H, W, C] in [-1, 1].
  // superclass [rows] feeds the image router's loss (null if none).
  StepResult train_step(const float* images, const LossTargets& targets,
                        const int32_t* superclass = nullptr);
  // Loss and precision@1 of a batch (masked rows ignored, and routed nowhere).
  EvalResult evaluate(const float* images, const LossTargets& targets,
                      const int32_t* superclass = nullptr);
  // Routing metrics since the last call (per MoE layer; see parallel/router.h).
  std::vector<Metric> routing_metrics();
  // Evaluation routing knobs, changeable between evaluations without retraining.
  MoeConfig& moe() { return options_.moe; }
  // Matrix-product FLOPs of one forward pass per image (k experts per token).
  double forward_flops_per_image(bool training) const;

  int64_t step() const { return optimizer_->steps_taken(); }
  ViT& model() { return *model_; }
  ParamStore& params() { return params_; }
  Optimizer& optimizer() { return *optimizer_; }
  const TrainerOptions& options() const { return options_; }

 private:
  void upload_images(const float* images, int64_t rows);
  void set_superclass(const int32_t* superclass, int64_t rows);

  Backend* be_;
  TrainerOptions options_;
  ParamStore params_;
  std::unique_ptr<ViT> model_;
  std::unique_ptr<Optimizer> optimizer_;
  ClassificationLoss loss_;
  Tensor images_, dlogits_, mask_;
  std::vector<float> host_mask_;
  std::vector<float> host_logits_;
};

}  // namespace vmoe
