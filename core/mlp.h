// The dense MLP sublayer: D -> mlp_dim -> D with exact GELU.
#pragma once

#include "core/feed_forward.h"
#include "core/gelu_hidden.h"
#include "core/linear.h"
#include "core/tensor.h"

namespace vmoe {

class Mlp final : public FeedForward {
 public:
  Mlp(Backend& be, ParamStore& store, const std::string& name, int dim, int hidden);

  void forward(GemmInput x, int64_t images, int tokens, float* y, const Pass& pass) override;
  void backward(GemmInput x, GemmInput dy, float* dx, Workspace& ws) override;
  void collect_activations(ActivationSet& set) override;
  bool only_gemms_read_input() const override { return true; }

 private:
  Backend* be_;
  Linear fc1_, fc2_;
  int64_t rows_ = 0;
  GeluHidden gelu_;  // the hidden layer [rows, hidden]
};

}  // namespace vmoe
