// A rank's experts: MLPs D -> hidden -> D with exact GELU, parameters stored
// [local experts, ...] in the expert region of the parameter store as a slice
// of the global [E, ...] tensors.
//
// They run on row segments of an expert buffer [rows, D]: each segment is a
// run of consecutive rows for one local expert (one per expert in the compact
// layout; one per (source rank, expert) after an all-to-all). Each segment is
// two GEMMs, so experts compute exactly the rows they were given.
#pragma once

#include <string>
#include <vector>

#include "core/activation_pool.h"
#include "core/param_store.h"
#include "core/tensor.h"

namespace vmoe {

struct ExpertSegment {
  int expert = 0;      // local expert index
  int64_t begin = 0;   // first buffer row
  int64_t rows = 0;
};

class ExpertMlps {
 public:
  ExpertMlps(Backend& be, ParamStore& store, const std::string& name, int total_experts,
             int first_expert, int local_experts, int dim, int hidden);

  int local_experts() const { return local_; }
  // out[segment rows] = expert(in[segment rows]) for every segment; buffers
  // hold `buffer_rows` rows. Saves what backward needs.
  void forward(const float* in, const std::vector<ExpertSegment>& segments, int64_t buffer_rows,
               float* out);
  // din[segment rows] = dL/din (overwrites); parameter gradients accumulate.
  void backward(const float* in, const float* dout, float* din);
  // The hidden activations and their gradient (core/activation_pool.h).
  void collect_activations(ActivationSet& set) { set.add(pre_, act_, dact_); }
  double flops_per_row() const { return 4.0 * dim_ * hidden_; }

 private:
  Backend* be_;
  ParamStore* store_;
  int local_, dim_, hidden_;
  ParamId w1_, b1_, w2_, b2_;
  std::vector<ExpertSegment> segments_;
  Tensor pre_, act_, dact_;
};

}  // namespace vmoe
