#include "parallel/expert_exchange.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <numeric>

#include "core/check.h"
#include "core/phase_timer.h"

namespace vmoe {

ExpertExchange::ExpertExchange(Backend& be, Communicator& ep, const ExpertPlacement& placement,
                               PeerBuffers* peers, int layer)
    : be_(&be),
      ep_(&ep),
      placement_(placement),
      peers_(peers),
      layer_(layer),
      recv_(be),
      ret_(be),
      send16_(be),
      recv16_(be) {
  VMOE_CHECK(peers == nullptr || peers->size() == placement.ep_size,
             "ExpertExchange: shared buffers of ", peers->size(), " ranks for an EP group of ",
             placement.ep_size);
}

bool ExpertExchange::begin(int64_t groups, int capacity, int item_rows, int dim) {
  const ExpertPlacement& p = placement_;
  dim_ = dim;
  fixed_rows_ = int64_t{p.experts} * groups * capacity * item_rows;
  chunk_rows_ = fixed_rows_ / p.ep_size;
  // Each source sends one chunk: L experts x its groups (or a replica's share of them).
  expert_rows_ = chunk_rows_ / p.local_experts * p.ep_size;
  in_place_ = false;
  // Host memory shared on one node: fp32 only (bf16 payloads are sent).
  if (peers_ == nullptr || bf16()) return false;
  // Segments of whole pages and whole rows, as large as any of the four's
  // so far: all four then have one stride, the one to_span_rows() uses.
  const int64_t row_bytes = int64_t{dim} * static_cast<int64_t>(sizeof(float));
  const int64_t page = PeerBuffers::page_bytes();
  const int64_t rows_per_unit = page / std::gcd(page, row_bytes);
  int64_t bytes = (fixed_rows_ + rows_per_unit - 1) / rows_per_unit * rows_per_unit * row_bytes;
  // The experts' input and output are this layer's (kept for backward); the
  // gradients' are shared with the layers of this size.
  const int keys[kBuffers] = {2 * layer_, 2 * layer_ + 1, -1 - static_cast<int>(2 * (bytes / page)),
                              -2 - static_cast<int>(2 * (bytes / page))};
  for (const int key : keys) bytes = std::max(bytes, peers_->bytes(key));
  // Row indices are int32: past that, all-to-alls.
  if (bytes % row_bytes != 0 || bytes / row_bytes * p.ep_size > INT32_MAX) return false;
  for (int b = 0; b < kBuffers; ++b) {
    spans_[b] = peers_->span(keys[b], bytes);
    if (spans_[b].base == nullptr) return false;  // given up, on every rank
    VMOE_ASSERT(spans_[b].stride == bytes);
  }
  stride_rows_ = bytes / row_bytes;
  return in_place_ = true;
}

void ExpertExchange::to_span_rows(int32_t* rows, int64_t n) const {
  VMOE_ASSERT(in_place_);
  const int P = placement_.ep_size, L = placement_.local_experts, r = placement_.ep_rank;
  const int64_t block_rows = block() / dim_;
  for (int64_t i = 0; i < n; ++i) {
    if (rows[i] < 0) continue;
    const int64_t b = rows[i] / block_rows, p = b / L, l = b % L;
    rows[i] =
        static_cast<int32_t>(p * stride_rows_ + (l * P + r) * block_rows + rows[i] % block_rows);
  }
}

void ExpertExchange::zero_sent(Buffer b) const {
  VMOE_ASSERT(in_place_);
  const int P = placement_.ep_size, L = placement_.local_experts, r = placement_.ep_rank;
  const int64_t blk = block();
  for (int p = 0; p < P; ++p)
    for (int l = 0; l < L; ++l)
      std::memset(span(b) + p * stride_rows_ * dim_ + (int64_t{l} * P + r) * blk, 0,
                  static_cast<size_t>(blk) * sizeof(float));
}

void ExpertExchange::publish(const char* wait) {
  PhaseScope timed("all_to_all");
  PhaseScope waited("exchange_wait");  // the barrier: how long peers lag
  PhaseScope where(wait);
  peers_->publish();
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

void ExpertExchange::dispatch(const float* send, float* expert_in, uint16_t* expert_in16) {
  if (bf16()) {
    VMOE_ASSERT(expert_in16 != nullptr);
    send_payload16();
    to_expert_major(recv16_.data(), expert_in16);
    be_->from_bf16(fixed_rows_ * dim_, expert_in16, expert_in);
    return;
  }
  recv_.resize({fixed_rows_, dim_});
  exchange32(send, recv_.data());
  to_expert_major(recv_.data(), expert_in);
}

void ExpertExchange::combine(const float* expert_out, float* back) {
  if (bf16()) {
    send_expert_major_bf16(expert_out);
    be_->from_bf16(fixed_rows_ * dim_, recv16_.data(), back);
    return;
  }
  ret_.resize({fixed_rows_, dim_});
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
  recv_.resize({fixed_rows_, dim_});
  exchange32(dback, recv_.data());
  to_expert_major(recv_.data(), dexpert_out);
}

void ExpertExchange::dispatch_backward(const float* dexpert_in, float* dsend) {
  if (bf16()) {
    send_expert_major_bf16(dexpert_in);
    be_->from_bf16(fixed_rows_ * dim_, recv16_.data(), dsend);
    return;
  }
  ret_.resize({fixed_rows_, dim_});
  to_source_major(dexpert_in, ret_.data());
  exchange32(ret_.data(), dsend);
}

void ExpertExchange::exchange_live(const int32_t* live, int32_t* live_in) {
  PhaseScope timed("all_to_all");
  // A few counts each way: its time is the wait for the last rank to come.
  PhaseScope waited("exchange_wait");
  PhaseScope where("exchange_wait.live_counts");
  // Chunk p of the sender's layout is L experts' parts: L counts each way.
  ep_->all_to_all(live, live_in, placement_.local_experts);
}

void ExpertExchange::exchange32(const float* send, float* recv) {
  PhaseScope timed("all_to_all");
  ep_->all_to_all(send, recv, chunk_rows_ * dim_);
}

}  // namespace vmoe
