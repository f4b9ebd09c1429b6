// Moves dispatched items to the ranks that hold their experts and the expert
// outputs back, over the expert-parallel communicator (comm/process_groups.h).
//
// The sender's fixed buffer [E, groups, C*I, D] is P equal chunks, one per EP
// rank, so each direction is one all-to-all of fixed size. A second, tiny
// all-to-all carries the kept-slot counts [E, groups], so the receiver
// gathers only filled slots into a compact buffer (by local expert) and the
// experts compute no empty slot; outputs are scattered back to the fixed
// layout before the return all-to-all. Backward mirrors both exchanges.
#pragma once

#include <vector>

#include "comm/communicator.h"
#include "comm/process_groups.h"
#include "core/activation_pool.h"
#include "core/tensor.h"
#include "parallel/experts.h"

namespace vmoe {

class ExpertExchange {
 public:
  ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement);

  // send: fixed layout, `groups` groups of `capacity` slots of item_rows rows;
  // filled: [E, groups] kept slots. Fills expert_in (compact, at least
  // max_compact_rows() rows) and returns its segments, one per local expert.
  std::vector<ExpertSegment> dispatch(const float* send, const int32_t* filled, int64_t groups,
                                      int capacity, int item_rows, int dim, float* expert_in);
  // expert_out (compact) -> back, the sender's fixed layout.
  void combine(const float* expert_out, float* back);
  // dback (fixed layout, dL/d back) -> dexpert_out (compact).
  void combine_backward(const float* dback, float* dexpert_out);
  // dexpert_in (compact) -> dsend (fixed layout, dL/d send).
  void dispatch_backward(const float* dexpert_in, float* dsend);

  int64_t fixed_rows() const { return fixed_rows_; }  // rows of a fixed buffer
  // The buffers and row maps dispatch keeps for the other three exchanges
  // (core/activation_pool.h).
  void collect_activations(ActivationSet& set) {
    set.add(recv_, ret_, recv_filled_, fixed_row_, compact_row_, block_rows_, send16_, recv16_);
  }

 private:
  Backend* be_;
  Communicator* ep_;
  ExpertPlacement placement_;
  int dim_ = 0;
  int64_t fixed_rows_ = 0, chunk_rows_ = 0;
  IntTensor recv_filled_;
  Tensor recv_, ret_;  // fixed layout, as received / to return
  int64_t blocks_ = 0;
  DeviceTensor<int64_t> fixed_row_, compact_row_, block_rows_;
  DeviceTensor<uint16_t> send16_, recv16_;  // bf16 payloads (Precision::kBf16)
  // All-to-all of `count` floats per rank; as bfloat16 when the backend's
  // precision says so (half the bytes).
  void exchange(const float* send, float* recv, int64_t count);
};

}  // namespace vmoe
