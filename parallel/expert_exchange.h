// Moves dispatched items to the ranks that hold their experts and the expert
// outputs back, over the expert-parallel communicator (comm/process_groups.h).
//
// The sender's fixed buffer [E, groups, S, D] (S = capacity * item rows per
// slot, empty slots zero) is P equal chunks, one per EP rank, so each
// direction is one all-to-all of a size every rank knows before the step: no
// counts travel and nothing is read on the host. A receiver gets [P sources,
// L local experts, G groups, S, D] and transposes the first two axes, so each
// expert's rows are contiguous ([L, P * G * S, D], parallel/experts.h); the
// outputs go back the same way. Backward mirrors both exchanges.
#pragma once

#include "comm/communicator.h"
#include "comm/process_groups.h"
#include "core/activation_pool.h"
#include "core/tensor.h"

namespace vmoe {

class ExpertExchange {
 public:
  ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement);

  // send: the fixed layout of `groups` groups of `capacity` slots of
  // item_rows rows. Fills expert_in [L, expert_rows(), dim].
  void dispatch(const float* send, int64_t groups, int capacity, int item_rows, int dim,
                float* expert_in);
  // Rows per local expert of the last dispatch.
  int64_t expert_rows() const { return expert_rows_; }
  // expert_out [L, expert_rows(), dim] -> back, the sender's fixed layout.
  void combine(const float* expert_out, float* back);
  // dback (fixed layout, dL/d back) -> dexpert_out [L, expert_rows(), dim].
  void combine_backward(const float* dback, float* dexpert_out);
  // dexpert_in [L, expert_rows(), dim] -> dsend (fixed layout, dL/d send).
  void dispatch_backward(const float* dexpert_in, float* dsend);

  // The buffers dispatch keeps for the other three exchanges (core/activation_pool.h).
  void collect_activations(ActivationSet& set) { set.add(recv_, ret_, send16_, recv16_); }

 private:
  // All-to-all of `count` floats per rank; as bfloat16 when the backend's
  // precision says so (half the bytes).
  void exchange(const float* send, float* recv, int64_t count);
  // [P, L, block] <-> [L, P, block] (block = one expert's rows from one source).
  void to_expert_major(const float* src, float* dst);
  void to_source_major(const float* src, float* dst);

  Backend* be_;
  Communicator* ep_;
  ExpertPlacement placement_;
  int dim_ = 0;
  int64_t fixed_rows_ = 0, chunk_rows_ = 0, expert_rows_ = 0;
  Tensor recv_, ret_;                       // source-major, as received / to return
  DeviceTensor<uint16_t> send16_, recv16_;  // bf16 payloads (Precision::kBf16)
};

}  // namespace vmoe
