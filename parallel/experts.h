// A rank's experts: MLPs D -> hidden -> D with exact GELU, parameters stored
// [local experts, ...] in the expert region of the parameter store as a slice
// of the global [E, ...] tensors.
//
// They run on an expert-major buffer [local experts, rows, D]: every expert
// gets the same number of rows (its capacity slots, empty ones included, so
// the shapes are known before the step and no count is read on the host), and
// each weight matrix is one batched GEMM over the experts. Empty slots hold
// zeros: their outputs are never combined, and their zero gradients add
// nothing to the weights' gradients. Where the backend sizes GEMMs on the
// host (the CPU), a buffer packed with each expert's kept rows first comes
// with their count (`live`), and the GEMMs skip the empty rest; there each
// expert goes through all of forward's (or backward's) ops before the next,
// so its hidden layer is still in cache when the next op reads it.
#pragma once

#include <string>
#include <vector>

#include "core/activation_pool.h"
#include "core/gelu_hidden.h"
#include "core/live_rows.h"
#include "core/param_store.h"
#include "core/tensor.h"
#include "core/workspace.h"

namespace vmoe {

class ExpertMlps {
 public:
  ExpertMlps(Backend& be, ParamStore& store, const std::string& name, int total_experts,
             int first_expert, int local_experts, int dim, int hidden);

  int local_experts() const { return local_; }
  // out[l] = expert l (in[l]) for in, out [local experts, rows, D]. Saves what
  // backward needs. Under bf16 an input without a bf16 copy is converted once
  // (kept for backward). Packed buffers (live not null, host): each
  // expert's rows are `sources` equal parts (one per source rank of an
  // exchange), and part s of expert l holds live[s * local experts + l]
  // rows; no row after them is read, and output rows past them are unspecified
  // (core/backend_types.h, BatchLevel::live). Kept for backward.
  void forward(GemmInput in, int64_t rows, float* out, const int32_t* live = nullptr,
               int sources = 1);
  // din = dL/din (overwrites); parameter gradients accumulate. `in` as given
  // to forward; dout's bf16 copy, if it has none, is made once for both GEMMs.
  void backward(GemmInput in, GemmInput dout, float* din, Workspace& ws);
  // The hidden activations and their gradient (core/activation_pool.h).
  void collect_activations(ActivationSet& set) {
    gelu_.collect_activations(set);
    set.add(dact_);
    set.add(dact16_, in16_);
  }
  double flops_per_row() const { return 4.0 * dim_ * hidden_; }

 private:
  Backend* be_;
  ParamStore* store_;
  int local_, dim_, hidden_;
  ParamId w1_, b1_, w2_, b2_;
  // Experts [first, first + count) of the local ones.
  struct Experts {
    int first, count;
  };
  // A batched GEMM over a range of the local experts: operands start a0, b0,
  // c0 elements in and step by a, b, c elements from one expert to the next,
  // and by row_a, row_b, row_c per buffer row (0: no buffer rows); its buffer
  // rows run along `axis`. Packed, one GEMM per (part, expert) on its live
  // rows (a range's counts held in range_live_ until the next batch()).
  struct Batch {
    int rows;  // m or k
    BatchLevel outer, inner;
    int64_t a0, b0, c0;
  };
  Batch batch(int64_t a, int64_t b, int64_t c, int64_t row_a, int64_t row_b, int64_t row_c,
              LiveAxis axis, Experts range);
  // The ranges a pass runs its ops over, one after the other.
  std::vector<Experts> ranges() const;

  LiveRows rows_;     // of the last forward's buffers (parts: sources)
  std::vector<int32_t> range_live_;  // batch()'s live counts of a range
  GeluHidden gelu_;   // the hidden layer [local experts * rows, hidden]
  Tensor dact_;       // its gradient
  Bf16Tensor dact16_, in16_;  // bf16 copies of GEMM inputs, under bf16
};

}  // namespace vmoe
