#include "parallel/expert_exchange.h"

#include <cstring>

#include "core/check.h"
#include "core/phase_timer.h"

namespace vmoe {

ExpertExchange::ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement,
                               PeerBuffers* peers)
    : be_(&be),
      ep_(&ep),
      placement_(placement),
      peers_(peers),
      recv_(be),
      ret_(be),
      send16_(be),
      recv16_(be) {
  VMOE_CHECK(peers == nullptr || peers->size() == placement.ep_size,
             "ExpertExchange: shared buffers of ", peers->size(), " ranks for an EP group of ",
             placement.ep_size);
}

float* ExpertExchange::outbox(int64_t elements) {
  // Host memory shared on one node: fp32 only (bf16 payloads are sent).
  if (peers_ == nullptr || bf16()) return nullptr;
  return static_cast<float*>(peers_->outbox(elements * static_cast<int64_t>(sizeof(float))));
}

bool ExpertExchange::in_place(const float* input) const {
  return peers_ != nullptr && peers_->filling() && input == peers_->current();
}

void ExpertExchange::pull(bool to_expert_major, float* dst, const int32_t* live) {
  PhaseScope timed("all_to_all");
  {
    PhaseScope waited("exchange_wait");  // the barrier: how long peers lag
    peers_->publish();
  }
  const int P = placement_.ep_size, L = placement_.local_experts, r = placement_.ep_rank;
  const int64_t blk = block(), block_rows = blk / dim_;
  for (int q = 0; q < P; ++q) {
    const float* box = static_cast<const float*>(peers_->peer(q));
    for (int l = 0; l < L; ++l) {
      // Source q's block for local expert l, or expert rank q's expert l's block for this source.
      const int64_t from = to_expert_major ? int64_t{r} * L + l : int64_t{l} * P + r;
      const int64_t to = to_expert_major ? int64_t{l} * P + q : int64_t{q} * L + l;
      const int64_t rows = live != nullptr ? live[q * L + l] : block_rows;
      std::memcpy(dst + to * blk, box + from * blk,
                  static_cast<size_t>(rows * dim_) * sizeof(float));
    }
  }
}

uint16_t* ExpertExchange::payload16(int64_t elements) {
  if (!bf16()) return nullptr;
  send16_.resize({elements});
  recv16_.resize({elements});
  payload_written_ = true;
  return send16_.data();
}

void ExpertExchange::send_payload16() {
  PhaseScope timed("all_to_all");
  VMOE_ASSERT(payload_written_ && send16_.size() == fixed_rows_ * dim_);
  payload_written_ = false;
  ep_->all_to_all(send16_.data(), recv16_.data(), chunk_rows_ * dim_);
}

void ExpertExchange::send_expert_major_bf16(const float* expert_major) {
  PhaseScope timed("all_to_all");
  VMOE_ASSERT(!payload_written_);  // payload16 is for the fixed layout's sends
  const int64_t count = chunk_rows_ * dim_, total = fixed_rows_ * dim_;
  send16_.resize({total});
  recv16_.resize({total});
  be_->to_bf16(total, expert_major, recv16_.data());  // recv16_ is free until the exchange
  to_source_major(recv16_.data(), send16_.data());
  ep_->all_to_all(send16_.data(), recv16_.data(), count);
}

void ExpertExchange::dispatch(const float* send, int64_t groups, int capacity, int item_rows,
                              int dim, float* expert_in, uint16_t* expert_in16,
                              const int32_t* live_in) {
  const ExpertPlacement& p = placement_;
  dim_ = dim;
  fixed_rows_ = int64_t{p.experts} * groups * capacity * item_rows;
  chunk_rows_ = fixed_rows_ / p.ep_size;
  // Each source sends one chunk: L experts x its groups (or a replica's share of them).
  expert_rows_ = chunk_rows_ / p.local_experts * p.ep_size;
  if (bf16()) {
    VMOE_ASSERT(expert_in16 != nullptr);
    send_payload16();
    to_expert_major(recv16_.data(), expert_in16);
    be_->from_bf16(fixed_rows_ * dim, expert_in16, expert_in);
    return;
  }
  if (in_place(send)) return pull(true, expert_in, live_in);
  recv_.resize({fixed_rows_, dim});
  exchange32(send, recv_.data());
  to_expert_major(recv_.data(), expert_in);
}

void ExpertExchange::combine(const float* expert_out, float* back, const int32_t* live) {
  if (bf16()) {
    send_expert_major_bf16(expert_out);
    be_->from_bf16(fixed_rows_ * dim_, recv16_.data(), back);
    return;
  }
  if (in_place(expert_out)) return pull(false, back, live);
  ret_.resize({fixed_rows_, dim_});
  to_source_major(expert_out, ret_.data());
  exchange32(ret_.data(), back);
}

void ExpertExchange::combine_backward(const float* dback, float* dexpert_out,
                                      uint16_t* dexpert_out16, const int32_t* live_in) {
  if (bf16()) {
    VMOE_ASSERT(dexpert_out16 != nullptr);
    send_payload16();
    to_expert_major(recv16_.data(), dexpert_out16);
    be_->from_bf16(fixed_rows_ * dim_, dexpert_out16, dexpert_out);
    return;
  }
  if (in_place(dback)) return pull(true, dexpert_out, live_in);
  recv_.resize({fixed_rows_, dim_});
  exchange32(dback, recv_.data());
  to_expert_major(recv_.data(), dexpert_out);
}

void ExpertExchange::dispatch_backward(const float* dexpert_in, float* dsend, const int32_t* live) {
  if (bf16()) {
    send_expert_major_bf16(dexpert_in);
    be_->from_bf16(fixed_rows_ * dim_, recv16_.data(), dsend);
    return;
  }
  if (in_place(dexpert_in)) return pull(false, dsend, live);
  ret_.resize({fixed_rows_, dim_});
  to_source_major(dexpert_in, ret_.data());
  exchange32(ret_.data(), dsend);
}

void ExpertExchange::exchange_live(const int32_t* live, int32_t* live_in) {
  PhaseScope timed("all_to_all");
  // Chunk p of the sender's layout is L experts' parts: L counts each way.
  ep_->all_to_all(live, live_in, placement_.local_experts);
}

void ExpertExchange::exchange32(const float* send, float* recv) {
  PhaseScope timed("all_to_all");
  ep_->all_to_all(send, recv, chunk_rows_ * dim_);
}

}  // namespace vmoe
