// The position-wise sublayer of a transformer block: the dense MLP here, or a
// sparse mixture of experts (parallel/), which the model receives through a
// factory so that core/ does not depend on parallel/.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"

namespace vmoe {

class ActivationSet;
class ParamStore;
class Workspace;

// A named scalar a sublayer reports after a step (e.g. an MoE layer's auxiliary losses).
struct Metric {
  std::string name;
  double value;
};

// What a forward pass is: training or not, and where its images sit in the
// global batch, so that per-token random draws (router noise) depend on the
// global position of the token, not on which rank holds it.
struct Pass {
  bool training = false;
  int64_t step = 0;           // optimiser steps taken so far
  // The same in device memory (Optimizer::device_step), read there by the
  // router's noise (not a host argument per step); null: use `step`.
  const int64_t* device_step = nullptr;
  int64_t first_image = 0;    // global index of this rank's first image in the batch
  int64_t global_images = 0;  // images in the global batch (0: this rank's batch)
  const float* image_mask = nullptr;  // device [images] 1/0; 0 = padding, routed nowhere
  // Activation recomputation (--remat): the training forward again, right
  // before backward. It computes the same bits; metrics are not counted twice.
  bool recompute = false;
};

class FeedForward {
 public:
  virtual ~FeedForward() = default;
  // y[images * tokens, dim] = f(x); saves what backward needs. x carries its
  // bf16 copy under Precision::kBf16 (for a sublayer whose first op is a GEMM).
  virtual void forward(GemmInput x, int64_t images, int tokens, float* y, const Pass& pass) = 0;
  // dx = (df/dx)^T dy (overwrites dx); parameter gradients accumulate. Includes
  // the gradients of any auxiliary loss the sublayer adds to the objective.
  // dy may carry its bf16 copy (written by the LayerNorm backward that made
  // it); a sublayer whose GEMMs read dy converts it where it comes without.
  virtual void backward(GemmInput x, GemmInput dy, float* dx, Workspace& ws) = 0;
  // Whether only GEMMs read x (the dense MLP): then under bf16 x may come as
  // its copy alone (GemmInput f32 null). An MoE layer routes the fp32 values.
  virtual bool only_gemms_read_input() const { return false; }
  // Auxiliary loss of the last training forward (already weighted); 0 for
  // dense. May read the device: not for the step loop.
  virtual double aux_loss() const { return 0.0; }
  // Training metrics live on the device (core/metric_store.h). After the
  // store's read(): the mean weighted auxiliary loss per training forward
  // since the last metrics() (this rank's share of the objective) ...
  virtual double aux_loss_mean() const { return 0.0; }
  // ... and the metrics accumulated since the last call, appended; then they
  // count from zero again.
  virtual void metrics(std::vector<Metric>& /*out*/) {}
  // Lists the tensors forward keeps for backward (core/activation_pool.h), so
  // that with remat they live only while the block runs. None listed: the
  // sublayer keeps its own, which is correct but saves nothing.
  virtual void collect_activations(ActivationSet& /*set*/) {}
};

// A side branch that reads the residual stream at the input of one block and
// sends its gradient back into it (e.g. Mobile V-MoE's per-image router).
class StreamObserver {
 public:
  virtual ~StreamObserver() = default;
  virtual void forward(const float* x, int64_t images, int tokens, const Pass& pass) = 0;
  // dx += the gradient of everything the observer fed (its consumers' and its own losses).
  virtual void backward(const float* x, float* dx, Workspace& ws) = 0;
  // As FeedForward's.
  virtual double aux_loss() const { return 0.0; }
  virtual double aux_loss_mean() const { return 0.0; }
  virtual void metrics(std::vector<Metric>& /*out*/) {}
};

// Builds the sublayer of block `block` (parameters named under `name`), or
// returns null to get the default dense MLP.
using FeedForwardFactory =
    std::function<std::unique_ptr<FeedForward>(int block, const std::string& name, ParamStore&)>;

}  // namespace vmoe
