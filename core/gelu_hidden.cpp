#include "core/gelu_hidden.h"

namespace vmoe {

GeluHidden::GeluHidden(Backend& be) : be_(&be), pre_(be), act_(be), act16_(be), slope16_(be) {}

namespace {
// p + offset for a nullable p.
template <typename T>
T* at(T* p, int64_t offset) {
  return p != nullptr ? p + offset : nullptr;
}
}  // namespace

GeluHidden::Pre GeluHidden::pre(const LiveRows& rows, int cols) {
  rows_ = rows;
  cols_ = cols;
  const Shape shape = {rows.experts * rows.rows, cols};
  if (be_->precision() != Precision::kBf16) {
    pre_.resize(shape);
    return {pre_.data(), nullptr};
  }
  temporary_.emplace(*be_, shape);
  return {nullptr, temporary_->data()};
}

void GeluHidden::gelu(const float* bias, int first, int count) {
  if (count < 0) count = rows_.experts - first;
  const Shape shape = {rows_.experts * rows_.rows, cols_};
  uint16_t* act16 = bf16_copy(act16_, shape);
  float* act = gemm_only_values(act_, shape);  // only GEMMs read it
  uint16_t* slope16 = bf16_copy(slope16_, shape);
  const uint16_t* pre16 = temporary_ ? temporary_->data() : nullptr;
  float* pre = temporary_ ? nullptr : pre_.data();
  rows_.for_each(
      [&](int experts, int expert, int64_t row, int64_t rows) {
        const int64_t x = row * cols_;
        be_->expert_bias_gelu(experts, rows, cols_, bias + expert * cols_, at(pre, x), at(pre16, x),
                              at(act, x), at(act16, x), at(slope16, x));
      },
      first, count);
  if (first + count == rows_.experts)
    temporary_.reset();  // back to the cache, for the next layer's
}

void GeluHidden::backward(const float* dg, const uint16_t* dg16, float* da, uint16_t* da16,
                          float* dbias, int first, int count) {
  const float* pre = pre_.data();
  const uint16_t* slope16 = bf16_copy(slope16_);
  rows_.for_each(
      [&](int experts, int expert, int64_t row, int64_t rows) {
        const int64_t x = row * cols_;
        be_->gelu_backward(experts, rows, cols_, at(pre, x), at(slope16, x), at(dg, x), at(dg16, x),
                           at(da, x), at(da16, x), at(dbias, int64_t{expert} * cols_));
      },
      first, count);
}

}  // namespace vmoe
