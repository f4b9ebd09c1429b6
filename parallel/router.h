// The noisy top-k router (V-MoE): for each item (a token, or a whole image)
// logits = x W (no bias); in training noisy = logits + (noise_std / E) N(0,1);
// gates = softmax(noisy); the k best experts, their gates as combine weights
// (not renormalised); then the slot of every choice in its expert's buffer
// (batch-priority routing, capacity per group), and the auxiliary losses.
//
// Consumers (MoE layers) read expert(), slot(), gate() and add the gradient of
// their loss w.r.t. the gates into d_gate(); backward() turns that, plus the
// auxiliary losses' gradient, into gradients for W and the router's input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/feed_forward.h"
#include "core/metric_store.h"
#include "core/param_store.h"
#include "core/tensor.h"
#include "parallel/moe_config.h"

namespace vmoe {

struct RoutingShape {
  int64_t groups = 0;
  int items = 0;  // per group
  int k = 0;
  int experts = 0;
  int capacity = 0;  // slots per expert per group
};

class Router {
 public:
  // `name` scopes the parameter (name/router/kernel); `stream` keys the noise.
  // Training metrics accumulate in `metrics` (null: a private store).
  Router(Backend& be, ParamStore& store, const std::string& name, int dim, const MoeConfig& config,
         uint64_t seed, uint64_t stream, MetricStore* metrics = nullptr);

  // x: [groups * items, dim]. items_per_image is T for tokens, 1 for images
  // (it maps items to images for the padding mask and the noise keys).
  void forward(const float* x, int64_t groups, int items, int items_per_image, const Pass& pass);
  // dx += dL/dx through the gates (d_gate()), the auxiliary losses and
  // extra_d_logits (nullable, [items, E], e.g. a super-class loss).
  void backward(const float* x, float* dx, const float* extra_d_logits = nullptr);
  // What forward keeps for backward (core/activation_pool.h); not the counts,
  // which accumulate over steps.
  void collect_activations(ActivationSet& set);

  const RoutingShape& shape() const { return shape_; }
  const int32_t* expert() const { return expert_.data(); }  // [groups * items, k]
  const int32_t* slot() const { return slot_.data(); }      // [groups * items, k], -1 = dropped
  const float* gate() const { return gate_.data(); }        // [groups * items, k]
  float* d_gate() { return d_gate_.data(); }                // consumers add here
  const float* logits() const { return logits_.data(); }    // clean, [groups * items, E]

  // Weighted auxiliary loss of the last forward if it trained (this rank's
  // share of the objective), else 0. Reads the device: not for the step loop.
  double aux_loss() const;
  // Training, from the metric store's last read (see core/metric_store.h):
  // the mean weighted auxiliary loss per training forward since the metrics
  // were last reset (this rank's share; sum it over ranks) ...
  double aux_loss_mean() const;
  // ... and the per-loss means, dropped fraction and each expert's share of
  // the choices, as <prefix>/<metric>, means over this rank's groups (average
  // them over ranks). Then counts from zero again.
  void metrics(const std::string& prefix, std::vector<Metric>& out);
  // Evaluation: choices per expert and dropped (last entry) since
  // reset_counts(), unmasked items only (evaluation forwards only).
  std::vector<int64_t> counts() const { return counts_.to_host(); }
  void reset_counts();

 private:
  Backend* be_;
  ParamStore* store_;
  const MoeConfig* config_;
  uint64_t seed_, stream_;
  int dim_;
  ParamId kernel_;
  RoutingShape shape_;
  bool training_ = false;
  Tensor logits_, noisy_, probs_, noisy_probs_, d_logits_, aux_d_logits_, group_losses_;
  IntTensor expert_, slot_;
  Tensor gate_, d_gate_;
  DeviceTensor<int64_t> counts_;  // evaluation
  MetricStoreRef metrics_;
  MetricId loss_sums_ = 0;  // training: sums over groups and steps of the 4 losses
  MetricId choices_ = 0;    // training: counts_'s twin
  bool aux_valid_ = false;  // the last forward trained: group_losses_ holds its losses
  int64_t groups_ = 0, global_groups_ = 0;  // of the last training forward
  int64_t train_forwards_ = 0;              // since metrics() (recomputes not counted)
};

}  // namespace vmoe
