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
// all-to-all runs and nothing is copied: the four buffers the experts read
// and write (their input and output, and those two's gradients) are shared
// windows, each rank's segment in expert-major order. The row index of each
// (item, choice) is rewritten to where its block lies in the expert rank's
// segment (to_span_rows), so the ops that scatter rows (the dispatch, the
// combine's backward) write them straight into the expert ranks' buffers and
// the ops that gather rows (the combine, the dispatch's backward) read them
// from there; a barrier (publish) separates each writer from its readers.
// The experts' input and output are this layer's own windows, kept from
// forward to backward; the gradients' windows are shared by the layers (one
// layer's backward runs at a time, between barriers).
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
  // peers: the EP group's shared buffers (null: all-to-alls); `layer` keys
  // this layer's own ones among them.
  ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement,
                 PeerBuffers* peers = nullptr, int layer = 0);

  // Sets the shape of the next pass's four exchanges: `groups` groups of
  // `capacity` slots of item_rows rows of `dim` floats. Collective where the
  // EP group shares memory: returns whether they run in place (fp32, and the
  // shared buffers fit), the same on every rank; then the pass uses span(),
  // mine() and publish() and not the four exchanges below.
  bool begin(int64_t groups, int capacity, int item_rows, int dim);
  bool in_place() const { return in_place_; }
  // In place: the buffers, as the layer's ops see them.
  enum Buffer { kIn, kOut, kOutGrad, kInGrad, kBuffers };
  // Every rank's segment of `b`, back to back: what to_span_rows() indexes.
  float* span(Buffer b) const { return reinterpret_cast<float*>(spans_[b].base); }
  // This rank's segment: [L, expert_rows(), dim], its experts' rows.
  float* mine(Buffer b) const {
    return span(b) + int64_t{placement_.ep_rank} * stride_rows_ * dim_;
  }
  // rows[n] of the fixed layout (core/backend.h moe_buffer_rows, -1 kept) ->
  // rows of the span: block (expert rank p, local expert l) of this rank's
  // layout is block (l, this rank) of p's segment.
  void to_span_rows(int32_t* rows, int64_t n) const;
  // Fixed layout (not packed): zeroes this rank's blocks of `b` in every
  // segment, as the empty slots of a fixed buffer are.
  void zero_sent(Buffer b) const;
  // Collective: the barrier between the writers of a buffer and its readers.
  // `wait` names the barrier's phase, "exchange_wait.<where>" (a literal:
  // core/phase_timer.h keeps the pointer), so each barrier's waits show.
  void publish(const char* wait);

  // Not in place: send: the fixed layout (begin()'s shape); under bf16 its
  // bf16 copy is what travels, written into payload16() first (send itself
  // is then not read). Fills expert_in [L, expert_rows(), dim], and under
  // bf16 expert_in16 (its bf16 copy; required then, else ignored).
  void dispatch(const float* send, float* expert_in, uint16_t* expert_in16);
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
  void combine(const float* expert_out, float* back);
  // dback (fixed layout, dL/d back; under bf16 its copy in payload16(), as
  // dispatch's) -> dexpert_out [L, expert_rows(), dim], and under bf16 its
  // bf16 copy dexpert_out16.
  void combine_backward(const float* dback, float* dexpert_out, uint16_t* dexpert_out16);
  // dexpert_in [L, expert_rows(), dim] -> dsend (fixed layout, dL/d send).
  void dispatch_backward(const float* dexpert_in, float* dsend);

  // The buffers dispatch keeps for the other three exchanges (core/activation_pool.h).
  void collect_activations(ActivationSet& set) { set.add(recv_, ret_, send16_, recv16_); }

 private:
  bool bf16() const { return be_->precision() == Precision::kBf16; }
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
  int layer_;
  int dim_ = 0;
  int64_t fixed_rows_ = 0, chunk_rows_ = 0, expert_rows_ = 0;
  bool in_place_ = false;
  PeerBuffers::Span spans_[kBuffers];
  int64_t stride_rows_ = 0;     // rows of each rank's segment
  Tensor recv_, ret_;           // fp32: source-major, as received / to return
  Bf16Tensor send16_, recv16_;  // bf16: the payloads sent and received
  bool payload_written_ = false;  // send16_ holds the next fixed-layout payload
};

}  // namespace vmoe
