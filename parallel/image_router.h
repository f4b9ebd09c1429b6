// Mobile V-MoE's per-image router: one router at the input of the first MoE
// block reads each image's representation (the mean of its tokens, or its
// class token) and chooses k experts per image for every MoE layer after it.
// Capacity is counted in images per group. An optional super-class loss,
// weight * CE(router logits, super-class), teaches it to route semantically
// (one super-class per expert).
#pragma once

#include <vector>

#include "core/feed_forward.h"
#include "parallel/router.h"

namespace vmoe {

class ImageRouter final : public StreamObserver {
 public:
  ImageRouter(Backend& be, ParamStore& store, const MoeConfig& config, int dim, uint64_t seed);

  // Super-class labels [images] (host) for the next forward only; training
  // needs them when the loss is on, evaluation uses them for the accuracy.
  // mask (host, nullable): images with 0 are padding and do not count.
  void set_superclass(const int32_t* labels, int64_t images, const uint8_t* mask = nullptr);

  void forward(const float* x, int64_t images, int tokens, const Pass& pass) override;
  void backward(const float* x, float* dx, Workspace& ws) override;
  double aux_loss() const override { return router_.aux_loss() + superclass_loss_; }
  void metrics(std::vector<Metric>& out) override;

  Router& router() { return router_; }
  // Unmasked images of the last forward whose top router logit is their super-class.
  int64_t superclass_hits() const { return hits_; }

 private:
  Backend* be_;
  const MoeConfig* config_;
  int dim_;
  Router router_;
  int64_t images_ = 0;
  int tokens_ = 0;
  bool training_ = false;
  bool superclass_active_ = false;  // the last forward added the super-class loss
  Tensor rep_, drep_, ones_, row_loss_, d_logits_;
  IntTensor labels_;
  std::vector<int32_t> host_labels_;
  std::vector<uint8_t> host_mask_;
  std::vector<float> host_logits_;
  double superclass_loss_ = 0;
  int64_t hits_ = 0;
  double sum_loss_ = 0, sum_hits_ = 0, sum_images_ = 0;
  int64_t loss_steps_ = 0;
};

}  // namespace vmoe
