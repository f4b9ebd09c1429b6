// A rank's experts: MLPs D -> hidden -> D with exact GELU, parameters stored
// [local experts, ...] in the expert region of the parameter store as a slice
// of the global [E, ...] tensors.
//
// They run on buffers laid out [sources][local experts][rows][D]: one block of
// `rows` slots per (source, expert). On one process sources = 1; with expert
// parallelism every source rank's block stays where the all-to-all put it and
// the GEMMs are batched over (source, expert) with two stride levels.
#pragma once

#include <string>

#include "core/param_store.h"
#include "core/tensor.h"

namespace vmoe {

class ExpertMlps {
 public:
  ExpertMlps(Backend& be, ParamStore& store, const std::string& name, int total_experts,
             int first_expert, int local_experts, int dim, int hidden);

  int local_experts() const { return local_; }
  // out = experts(in); saves what backward needs.
  void forward(const float* in, int sources, int64_t rows, float* out);
  // din = dL/din (overwrites); parameter gradients accumulate.
  void backward(const float* in, const float* dout, float* din);
  double flops_per_row() const { return 4.0 * dim_ * hidden_; }

 private:
  Backend* be_;
  ParamStore* store_;
  int local_, dim_, hidden_;
  ParamId w1_, b1_, w2_, b2_;
  int sources_ = 0;
  int64_t rows_ = 0;
  Tensor pre_, act_, dact_;
};

}  // namespace vmoe
