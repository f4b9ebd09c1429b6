// One training run's model, optimiser and step logic, independent of where
// batches come from: vmoe_train feeds it the loader's batches, the benchmark
// feeds it synthetic ones, so both time the same code.
#pragma once

#include <cstdint>
#include <memory>

#include "core/backend.h"
#include "core/loss.h"
#include "core/metric_store.h"
#include "core/optimizer.h"
#include "core/param_store.h"
#include "core/schedule.h"
#include "comm/process_groups.h"
#include "core/vit.h"
#include "parallel/grad_sync.h"
#include "parallel/moe_config.h"

namespace vmoe {

struct TrainerOptions {
  ViTConfig model;
  MoeConfig moe;  // disabled (no layers) for a dense ViT
  OptimizerConfig optimizer;
  LrSchedule schedule;
  uint64_t seed = 0;
  int64_t global_batch = 0;  // the loss is the mean over the global batch
  int64_t allreduce_bucket_floats = int64_t{8} << 20;
  Precision precision = Precision::kFp32;  // bf16: GEMM inputs and exchange buffers
  // Backend::set_attention_pad_to (0: strided heads, n > 0: head-major,
  // tokens padded to a multiple of n); -1 leaves the backend's default.
  int attention_pad_to = -1;
  // Record the step once (after two uncaptured steps) and replay it: a CUDA
  // graph on a GPU, one launch for the step's kernels. Dropped by an
  // evaluation and captured again when memory it uses is freed; runs
  // uncaptured where recording fails or phases are timed.
  bool capture_step = false;
};

struct StepResult {
  double lr = 0;  // the step's learning rate
  // Host<->device copies and waits inside the step, inputs excluded: none
  // (tests assert it; core/backend.h HostTraffic).
  HostTraffic traffic;
};

// What the steps since the last read_metrics() measured, global over ranks.
struct TrainMetrics {
  int64_t steps = 0;
  double loss = 0;       // classification loss, mean over the examples of those steps
  double aux_loss = 0;   // weighted auxiliary losses (MoE), mean per step
  double grad_norm = 0;  // of the last step, before clipping
  std::vector<Metric> routing;  // per MoE layer (parallel/router.h), averaged over ranks
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
  // groups: the run's communicators (null: a single process).
  Trainer(Backend& be, const TrainerOptions& options, ProcessGroups* groups = nullptr);

  // One optimiser step on this rank's rows of a global batch: host images
  // [rows, H, W, C] in [-1, 1]. superclass [rows] feeds the image router's
  // loss (null if none). The inputs are copied to the device first; the step
  // itself makes no host copy and no host wait: its loss, gradient norm and
  // routing metrics accumulate on the device until read_metrics().
  StepResult train_step(const float* images, const LossTargets& targets,
                        const int32_t* superclass = nullptr);
  // train_step in two halves: stage() copies a batch's inputs to the
  // device, train_staged() takes one optimiser step on them. Benchmarks step
  // again and again on inputs already on the device (image routing's
  // super-class labels serve one forward: stage again for those).
  void stage(const float* images, const LossTargets& targets, const int32_t* superclass = nullptr);
  // stage() for 8-bit pixels [rows, H, W, C] (a GPU's input: a quarter of
  // the bytes, copied beside the step before): scaled to [-1, 1] on the
  // device, then, for mixup_lambda >= 0, rows 2i and 2i + 1 mixed with it.
  void stage_pixels(const uint8_t* pixels, const LossTargets& targets,
                    const int32_t* superclass = nullptr, float mixup_lambda = -1.0f);
  StepResult train_staged();
  // The metrics of the steps since the last call: one copy from the device,
  // then host reductions over ranks (collective: every rank calls it).
  TrainMetrics read_metrics();
  // Loss and precision@1 of this rank's rows (masked rows ignored, and
  // routed nowhere); reduce_over_ranks() sums results over the world.
  EvalResult evaluate(const float* images, const LossTargets& targets,
                      const int32_t* superclass = nullptr);
  void reduce_over_ranks(EvalResult& r);
  // Pre-logit features [rows, feature_size] (host) of this rank's rows, in
  // evaluation mode (masked rows are routed nowhere; their features are junk).
  // The routers keep this forward's choices until the next one.
  void features(const float* images, int64_t rows, const uint8_t* mask, float* out);
  int rank() const { return rank_; }
  int world() const { return world_; }
  // Evaluation routing knobs, changeable between evaluations without retraining.
  MoeConfig& moe() { return options_.moe; }
  // Matrix-product FLOPs of one forward pass per image (k experts per token).
  double forward_flops_per_image(bool training) const;

  int64_t step() const { return optimizer_->steps_taken(); }
  ViT& model() { return *model_; }
  Backend& backend() { return *be_; }
  ProcessGroups* groups() { return groups_; }
  ParamStore& params() { return params_; }
  Optimizer& optimizer() { return *optimizer_; }
  const TrainerOptions& options() const { return options_; }

 private:
  void upload_images(const float* images, int64_t rows);
  // The device work of one training step on the staged batch (all of it:
  // what a captured step records).
  void queue_step();
  void forward_eval(const float* images, int64_t rows, const uint8_t* mask);
  void set_superclass(const int32_t* superclass, const LossTargets& targets);

  Backend* be_;
  TrainerOptions options_;
  ProcessGroups* groups_;
  int rank_ = 0, world_ = 1;
  int64_t rank_batch_ = 0;
  int64_t staged_rows_ = -1;
  ParamStore params_;
  MetricStore metrics_;
  MetricId loss_sum_ = 0, grad_norm_ = 0;
  int64_t steps_since_read_ = 0;
  int warm_steps_ = 0;  // uncaptured steps since the last capture (or drop)
  bool capture_failed_ = false;
  std::unique_ptr<GradientSync> sync_;
  std::unique_ptr<ViT> model_;
  std::unique_ptr<Optimizer> optimizer_;
  ClassificationLoss loss_;
  Tensor images_, dlogits_, mask_;
  DeviceTensor<double> grad_sq_;  // dense and expert sums of squares
  Tensor clip_factor_;
  std::vector<float> host_mask_;
  std::vector<float> host_logits_;
};

}  // namespace vmoe
