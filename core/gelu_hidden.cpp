#include "core/gelu_hidden.h"

namespace vmoe {

GeluHidden::GeluHidden(Backend& be) : be_(&be), pre_(be), act_(be), act16_(be), slope16_(be) {}

GeluHidden::Pre GeluHidden::pre(int experts, int64_t rows, int cols) {
  experts_ = experts;
  rows_ = rows;
  cols_ = cols;
  const Shape shape = {experts * rows, cols};
  if (be_->precision() != Precision::kBf16) {
    pre_.resize(shape);
    return {pre_.data(), nullptr};
  }
  temporary_.emplace(*be_, shape);
  return {nullptr, temporary_->data()};
}

void GeluHidden::gelu(const float* bias) {
  const Shape shape = {experts_ * rows_, cols_};
  uint16_t* act16 = bf16_copy(act16_, shape);
  float* act = gemm_only_values(act_, shape);  // only GEMMs read it
  uint16_t* slope16 = bf16_copy(slope16_, shape);
  const uint16_t* pre16 = temporary_ ? temporary_->data() : nullptr;
  float* pre = temporary_ ? nullptr : pre_.data();
  be_->expert_bias_gelu(experts_, rows_, cols_, bias, pre, pre16, act, act16, slope16);
  temporary_.reset();  // back to the cache, for the next layer's
}

void GeluHidden::backward(const float* dg, const uint16_t* dg16, float* da, uint16_t* da16,
                          float* dbias) {
  be_->gelu_backward(experts_, rows_, cols_, pre_.data(), bf16_copy(slope16_), dg, dg16, da, da16,
                     dbias);
}

}  // namespace vmoe
