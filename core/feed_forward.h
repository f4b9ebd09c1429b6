// The position-wise sublayer of a transformer block: the dense MLP here, or a
// sparse mixture of experts (parallel/), which the model receives through a
// factory so that core/ does not depend on parallel/.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace vmoe {

class ParamStore;
class Workspace;

// A named scalar a sublayer reports after a step (e.g. an MoE layer's auxiliary losses).
struct Metric {
  std::string name;
  double value;
};

class FeedForward {
 public:
  virtual ~FeedForward() = default;
  // y[images * tokens, dim] = f(x); saves what backward needs.
  virtual void forward(const float* x, int64_t images, int tokens, float* y, bool training) = 0;
  // dx = (df/dx)^T dy (overwrites dx); parameter gradients accumulate. Includes
  // the gradients of any auxiliary loss the sublayer adds to the objective.
  virtual void backward(const float* x, const float* dy, float* dx, Workspace& ws) = 0;
  // Auxiliary loss of the last training forward (already weighted); 0 for dense.
  virtual double aux_loss() const { return 0.0; }
  virtual void metrics(std::vector<Metric>& /*out*/) const {}
};

// Builds the sublayer of block `block` (parameters named under `name`), or
// returns null to get the default dense MLP.
using FeedForwardFactory =
    std::function<std::unique_ptr<FeedForward>(int block, const std::string& name, ParamStore&)>;

}  // namespace vmoe
