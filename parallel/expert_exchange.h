// Moves dispatched items to the ranks that hold their experts and the expert
// outputs back, over the expert-parallel communicator (comm/process_groups.h).
//
// The sender's fixed buffer [E, groups, S, D] (S = capacity * item rows per
// slot, empty slots zero) is P equal chunks, one per EP rank, so each
// direction is one all-to-all of a size every rank knows before the step: no
// counts travel and nothing is read on the host. A receiver gets [P sources,
// L local experts, G groups, S, D] and transposes the first two axes, so each
// expert's rows are contiguous ([L, P * G * S, D], parallel/experts.h); the
// outputs go back the same way. Backward mirrors both exchanges. Where the
// backend packs each expert's kept rows first (the CPU), the live row counts
// of each chunk travel too, so the experts skip the empty rest.
//
// Where the EP group's ranks share a node (comm/peer_buffers.h, fp32), no
// all-to-all runs: the op that produces what an exchange sends writes it
// into outbox(), a barrier publishes it, and each rank copies the blocks it
// needs straight from its peers' outboxes into its own layout (the
// transpose fused into the one copy), only the live rows of packed buffers.
//
// Under bf16 the payload is written as bf16 by the op that fills it
// (payload16) or converted once where it leaves, travels and is transposed
// as bfloat16 (half the bytes each way), and the receiver keeps
// the bf16 values it got as the GEMM input copy of the experts' input and of
// their output gradient (core/backend.h GemmInput).
#pragma once

#include "comm/communicator.h"
#include "comm/peer_buffers.h"
#include "comm/process_groups.h"
#include "core/activation_pool.h"
#include "core/tensor.h"

namespace vmoe {

class ExpertExchange {
 public:
  // peers: the EP group's shared buffers (null: all-to-alls).
  ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement,
                 PeerBuffers* peers = nullptr);

  // Where the producer of the next exchange's input writes it (`elements`
  // floats: the fixed layout or the expert-major buffer), so that the
  // exchange reads it in place; null where exchanges send their input (then
  // the producer writes its own buffer). Each non-null outbox must be passed
  // to the next exchange as its input.
  float* outbox(int64_t elements);

  // send: the fixed layout of `groups` groups of `capacity` slots of
  // item_rows rows; under bf16 its bf16 copy is what travels, written into
  // payload16() first (send itself is then not read). Fills expert_in
  // [L, expert_rows(), dim], and under bf16 expert_in16 (its bf16 copy;
  // required then, else ignored). Packed buffers: live_in (exchange_live's)
  // lets an in-place exchange copy only the kept rows; null: every row.
  void dispatch(const float* send, int64_t groups, int capacity, int item_rows, int dim,
                float* expert_in, uint16_t* expert_in16, const int32_t* live_in = nullptr);
  // Under bf16: the payload the next dispatch or combine_backward sends
  // (`elements` = the fixed layout's rows * dim), for the op that writes
  // `send` or `dback` to write its bf16 copy into as it goes (no conversion
  // pass); each of those two sends requires it. Null under fp32.
  uint16_t* payload16(int64_t elements);
  // Rows per local expert of the last dispatch.
  int64_t expert_rows() const { return expert_rows_; }
  // Packed buffers (Backend::skips_empty_slots): each expert's chunk is as
  // many parts as it has replicas, one per receiving rank; live [E * parts]
  // (core/backend.h moe_packed_buffer_rows) -> live_in [P sources, L local
  // experts], the rows of each that came packed (host).
  int parts_per_expert() const { return placement_.replicas; }
  void exchange_live(const int32_t* live, int32_t* live_in);
  int sources() const { return placement_.ep_size; }
  // expert_out [L, expert_rows(), dim] -> back, the sender's fixed layout.
  // live: this rank's own counts (moe_packed_buffer_rows), as above.
  void combine(const float* expert_out, float* back, const int32_t* live = nullptr);
  // dback (fixed layout, dL/d back; under bf16 its copy in payload16(), as
  // dispatch's) -> dexpert_out [L, expert_rows(), dim], and under bf16 its
  // bf16 copy dexpert_out16. live_in as dispatch's.
  void combine_backward(const float* dback, float* dexpert_out, uint16_t* dexpert_out16,
                        const int32_t* live_in = nullptr);
  // dexpert_in [L, expert_rows(), dim] -> dsend (fixed layout, dL/d send).
  void dispatch_backward(const float* dexpert_in, float* dsend, const int32_t* live = nullptr);

  // The buffers dispatch keeps for the other three exchanges (core/activation_pool.h).
  void collect_activations(ActivationSet& set) { set.add(recv_, ret_, send16_, recv16_); }

 private:
  bool bf16() const { return be_->precision() == Precision::kBf16; }
  // Whether `input` is the outbox just handed out: the exchange reads it in place.
  bool in_place(const float* input) const;
  // In place: publishes the outboxes, then copies to_expert_major: block
  // (this rank, expert l) of each source p's fixed layout to dst [L, P,
  // block]; else block (l, this rank) of each expert rank q's expert-major
  // output to dst, the fixed layout [P, L, block]. live[q * L + l]: the rows
  // of rank q's block l to copy (null: all).
  void pull(bool to_expert_major, float* dst, const int32_t* live);
  // fp32: the all-to-all of one chunk per rank.
  void exchange32(const float* send, float* recv);
  // bf16: the fixed-layout payload written into payload16() sent;
  // recv16_ holds what arrived.
  void send_payload16();
  // bf16: expert-major values converted, put in source-major order and sent.
  void send_expert_major_bf16(const float* expert_major);
  // [P, L, block] <-> [L, P, block] (block = one expert's rows from one
  // source), of floats or of bf16 payloads.
  template <typename T>
  void to_expert_major(const T* src, T* dst) {
    be_->transpose_blocks(placement_.ep_size, placement_.local_experts, block(), src, dst);
  }
  template <typename T>
  void to_source_major(const T* src, T* dst) {
    be_->transpose_blocks(placement_.local_experts, placement_.ep_size, block(), src, dst);
  }
  int64_t block() const { return expert_rows_ / placement_.ep_size * dim_; }

  Backend* be_;
  Communicator* ep_;
  ExpertPlacement placement_;
  PeerBuffers* peers_;
  int dim_ = 0;
  int64_t fixed_rows_ = 0, chunk_rows_ = 0, expert_rows_ = 0;
  Tensor recv_, ret_;           // fp32: source-major, as received / to return
  Bf16Tensor send16_, recv16_;  // bf16: the payloads sent and received
  bool payload_written_ = false;  // send16_ holds the next fixed-layout payload
};

}  // namespace vmoe
