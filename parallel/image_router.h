// Mobile V-MoE's per-image router: one router at the input of the first MoE
// block reads each image's representation (the mean of its tokens, or its
// class token) and chooses k experts per image for every MoE layer after it.
// Capacity is counted in images per group. An optional super-class loss,
// weight * CE(router logits, super-class), teaches it to route semantically
// (one super-class per expert).
#pragma once

#include <vector>

#include "core/feed_forward.h"
#include "core/metric_store.h"
#include "parallel/router.h"

namespace vmoe {

class ImageRouter final : public StreamObserver {
 public:
  // Training metrics accumulate in `metrics` (null: a private store).
  ImageRouter(Backend& be, ParamStore& store, const MoeConfig& config, int dim, uint64_t seed,
              MetricStore* metrics = nullptr);

  // Super-class labels [images] (host) for the next forward only, copied to
  // the device now, before the step; training needs them when the loss is
  // on, evaluation uses them for the accuracy. mask (host, nullable): images
  // with 0 are padding and do not count.
  void set_superclass(const int32_t* labels, int64_t images, const uint8_t* mask = nullptr);
  void forward(const float* x, int64_t images, int tokens, const Pass& pass) override;
  void backward(const float* x, float* dx, Workspace& ws) override;
  // The last forward's weighted auxiliary loss (reads the device), and the
  // mean since the metrics were reset (core/metric_store.h), as the Router's.
  double aux_loss() const override;
  double aux_loss_mean() const override;
  void metrics(std::vector<Metric>& out) override;
  Router& router() { return router_; }
  // Evaluation: unmasked images of the last forward whose top router logit is
  // their super-class (reads the device).
  int64_t superclass_hits() const;

 private:
  Backend* be_;
  const MoeConfig* config_;
  int dim_;
  MetricStoreRef metrics_;  // before router_, which reports to it too
  Router router_;
  MetricId loss_sum_ = 0, hits_ = 0;  // training: super-class loss and top-1 hits
  int64_t images_ = 0;
  int tokens_ = 0;
  bool labels_ready_ = false;       // set_superclass() gave the next forward its labels
  bool masked_ = false;             // ... and a mask
  bool superclass_active_ = false;  // the last forward added the super-class loss
  double loss_scale_ = 0;           // of that loss: weight / global images
  Tensor rep_, drep_, ones_, row_loss_, d_logits_, mask_;
  IntTensor labels_;
  DeviceTensor<int64_t> eval_hits_;
  int64_t train_images_ = 0, loss_forwards_ = 0;  // since metrics()
  double global_images_ = 0;                      // of the last training forward
};

}  // namespace vmoe
