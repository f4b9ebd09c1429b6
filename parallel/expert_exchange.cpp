#include "parallel/expert_exchange.h"

#include "core/phase_timer.h"

namespace vmoe {

ExpertExchange::ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement)
    : be_(&be),
      ep_(&ep),
      placement_(placement),
      recv_filled_(be),
      recv_(be),
      ret_(be),
      fixed_row_(be),
      compact_row_(be),
      block_rows_(be),
      send16_(be),
      recv16_(be) {}

void ExpertExchange::exchange(const float* send, float* recv, int64_t count) {
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

std::vector<ExpertSegment> ExpertExchange::dispatch(const float* send, const int32_t* filled,
                                                    int64_t groups, int capacity, int item_rows,
                                                    int dim, float* expert_in) {
  const ExpertPlacement& p = placement_;
  const int P = p.ep_size, L = p.local_experts;
  const int64_t slot_rows = int64_t{capacity} * item_rows;
  dim_ = dim;
  fixed_rows_ = int64_t{p.experts} * groups * slot_rows;
  chunk_rows_ = fixed_rows_ / P;
  // Groups of one sender that one receiver gets, per local expert.
  const int64_t recv_groups = p.replicas > 1 ? groups / p.replicas : groups;
  recv_.resize({fixed_rows_, dim});
  ret_.resize({fixed_rows_, dim});
  recv_filled_.resize({int64_t{P} * L * recv_groups});
  {
    PhaseScope timed("all_to_all");
    ep_->all_to_all(filled, recv_filled_.data(), int64_t{L} * recv_groups);
    exchange(send, recv_.data(), chunk_rows_ * dim);
  }
  // Blocks of kept rows: from (source, local expert, group) in the fixed
  // layout to the compact layout ordered by (local expert, source, group).
  const std::vector<int32_t> n = recv_filled_.to_host();
  std::vector<int64_t> fixed_row, compact_row, rows;
  std::vector<ExpertSegment> segments;
  int64_t next = 0;
  for (int l = 0; l < L; ++l) {
    const int64_t begin = next;
    for (int src = 0; src < P; ++src) {
      for (int64_t g = 0; g < recv_groups; ++g) {
        const int64_t block = (int64_t{src} * L + l) * recv_groups + g;
        fixed_row.push_back(block * slot_rows);
        compact_row.push_back(next);
        rows.push_back(int64_t{n[static_cast<size_t>(block)]} * item_rows);
        next += rows.back();
      }
    }
    segments.push_back({l, begin, next - begin});
  }
  blocks_ = static_cast<int64_t>(rows.size());
  for (auto* t : {&fixed_row_, &compact_row_, &block_rows_}) t->resize({blocks_});
  fixed_row_.copy_from_host(fixed_row);
  compact_row_.copy_from_host(compact_row);
  block_rows_.copy_from_host(rows);
  be_->copy_row_blocks(blocks_, fixed_row_.data(), compact_row_.data(), block_rows_.data(), dim,
                       recv_.data(), expert_in);
  return segments;
}

void ExpertExchange::combine(const float* expert_out, float* back) {
  be_->copy_row_blocks(blocks_, compact_row_.data(), fixed_row_.data(), block_rows_.data(), dim_,
                       expert_out, ret_.data());
  PhaseScope timed("all_to_all");
  exchange(ret_.data(), back, chunk_rows_ * dim_);
}

void ExpertExchange::combine_backward(const float* dback, float* dexpert_out) {
  {
    PhaseScope timed("all_to_all");
    exchange(dback, recv_.data(), chunk_rows_ * dim_);
  }
  be_->copy_row_blocks(blocks_, fixed_row_.data(), compact_row_.data(), block_rows_.data(), dim_,
                       recv_.data(), dexpert_out);
}

void ExpertExchange::dispatch_backward(const float* dexpert_in, float* dsend) {
  be_->copy_row_blocks(blocks_, compact_row_.data(), fixed_row_.data(), block_rows_.data(), dim_,
                       dexpert_in, ret_.data());
  PhaseScope timed("all_to_all");
  exchange(ret_.data(), dsend, chunk_rows_ * dim_);
}

}  // namespace vmoe
