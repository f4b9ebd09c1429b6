#include "parallel/expert_exchange.h"

#include "core/phase_timer.h"

namespace vmoe {

ExpertExchange::ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement)
    : be_(&be), ep_(&ep), placement_(placement), recv_(be), ret_(be), send16_(be), recv16_(be) {}

void ExpertExchange::exchange(const float* send, float* recv, int64_t count) {
  PhaseScope timed("all_to_all");
  if (be_->precision() != Precision::kBf16) {
    ep_->all_to_all(send, recv, count);
    return;
  }
  const int64_t total = count * placement_.ep_size;
  send16_.resize({total});
  recv16_.resize({total});
  be_->to_bf16(total, send, send16_.data());
  ep_->all_to_all(send16_.data(), recv16_.data(), count);
  be_->from_bf16(total, recv16_.data(), recv);
}

void ExpertExchange::to_expert_major(const float* src, float* dst) {
  const int P = placement_.ep_size, L = placement_.local_experts;
  be_->transpose_blocks(P, L, expert_rows_ / P * dim_, src, dst);
}

void ExpertExchange::to_source_major(const float* src, float* dst) {
  const int P = placement_.ep_size, L = placement_.local_experts;
  be_->transpose_blocks(L, P, expert_rows_ / P * dim_, src, dst);
}

void ExpertExchange::dispatch(const float* send, int64_t groups, int capacity, int item_rows,
                              int dim, float* expert_in) {
  const ExpertPlacement& p = placement_;
  dim_ = dim;
  fixed_rows_ = int64_t{p.experts} * groups * capacity * item_rows;
  chunk_rows_ = fixed_rows_ / p.ep_size;
  // Each source sends one chunk: L experts x its groups (or a replica's share of them).
  expert_rows_ = chunk_rows_ / p.local_experts * p.ep_size;
  recv_.resize({fixed_rows_, dim});
  ret_.resize({fixed_rows_, dim});
  exchange(send, recv_.data(), chunk_rows_ * dim);
  to_expert_major(recv_.data(), expert_in);
}

void ExpertExchange::combine(const float* expert_out, float* back) {
  to_source_major(expert_out, ret_.data());
  exchange(ret_.data(), back, chunk_rows_ * dim_);
}

void ExpertExchange::combine_backward(const float* dback, float* dexpert_out) {
  exchange(dback, recv_.data(), chunk_rows_ * dim_);
  to_expert_major(recv_.data(), dexpert_out);
}

void ExpertExchange::dispatch_backward(const float* dexpert_in, float* dsend) {
  to_source_major(dexpert_in, ret_.data());
  exchange(ret_.data(), dsend, chunk_rows_ * dim_);
}

}  // namespace vmoe
