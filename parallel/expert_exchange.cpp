#include "parallel/expert_exchange.h"

#include "core/check.h"
#include "core/phase_timer.h"

namespace vmoe {

ExpertExchange::ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement)
    : be_(&be), ep_(&ep), placement_(placement), recv_(be), ret_(be), send16_(be), recv16_(be) {}

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
                              int dim, float* expert_in, uint16_t* expert_in16) {
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
  recv_.resize({fixed_rows_, dim});
  ret_.resize({fixed_rows_, dim});
  exchange32(send, recv_.data());
  to_expert_major(recv_.data(), expert_in);
}

void ExpertExchange::combine(const float* expert_out, float* back) {
  if (bf16()) {
    send_expert_major_bf16(expert_out);
    be_->from_bf16(fixed_rows_ * dim_, recv16_.data(), back);
    return;
  }
  to_source_major(expert_out, ret_.data());
  exchange32(ret_.data(), back);
}

void ExpertExchange::combine_backward(const float* dback, float* dexpert_out,
                                      uint16_t* dexpert_out16) {
  if (bf16()) {
    VMOE_ASSERT(dexpert_out16 != nullptr);
    send_payload16();
    to_expert_major(recv16_.data(), dexpert_out16);
    be_->from_bf16(fixed_rows_ * dim_, dexpert_out16, dexpert_out);
    return;
  }
  exchange32(dback, recv_.data());
  to_expert_major(recv_.data(), dexpert_out);
}

void ExpertExchange::dispatch_backward(const float* dexpert_in, float* dsend) {
  if (bf16()) {
    send_expert_major_bf16(dexpert_in);
    be_->from_bf16(fixed_rows_ * dim_, recv16_.data(), dsend);
    return;
  }
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
