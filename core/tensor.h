// Typed device memory owned through a Backend, with a shape.
//
// resize() only reallocates when the new size exceeds the capacity, so
// buffers sized on the first step are reused for the rest of the run (no
// allocation in the step loop). Contents are undefined after a resize.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <numeric>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/check.h"

namespace vmoe {

using Shape = std::vector<int64_t>;

inline int64_t num_elements(const Shape& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

template <typename T>
class DeviceTensor {
 public:
  DeviceTensor() = default;
  explicit DeviceTensor(Backend& backend, Shape shape = {}) : backend_(&backend) { resize(shape); }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  DeviceTensor(DeviceTensor&& o) noexcept { swap(o); }
  DeviceTensor& operator=(DeviceTensor&& o) noexcept {
    swap(o);
    return *this;
  }
  ~DeviceTensor() { release(); }

  void bind(Backend& backend) {
    VMOE_ASSERT(data_ == nullptr || backend_ == &backend);
    backend_ = &backend;
  }
  void resize(const Shape& shape) {
    VMOE_ASSERT(backend_ != nullptr);
    const int64_t n = num_elements(shape);
    VMOE_ASSERT(n >= 0);
    if (n > capacity_) {
      release();
      data_ = static_cast<T*>(backend_->allocate(static_cast<size_t>(n) * sizeof(T)));
      capacity_ = n;
    }
    shape_ = shape;
    size_ = n;
  }
  void resize(std::initializer_list<int64_t> shape) { resize(Shape(shape)); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  Backend& backend() const { return *backend_; }

  void copy_from_host(const T* src, int64_t n) {
    VMOE_ASSERT(n <= size_);
    backend_->copy_to_device(data_, src, static_cast<size_t>(n) * sizeof(T));
  }
  void copy_from_host(const std::vector<T>& src) {
    copy_from_host(src.data(), static_cast<int64_t>(src.size()));
  }
  // n elements at a device pointer, copied to the host.
  static std::vector<T> to_host_of(const T* device, int64_t n, Backend& backend) {
    std::vector<T> out(static_cast<size_t>(n));
    if (n > 0) backend.copy_to_host(out.data(), device, out.size() * sizeof(T));
    return out;
  }
  std::vector<T> to_host() const {
    std::vector<T> out(static_cast<size_t>(size_));
    if (size_ > 0) backend_->copy_to_host(out.data(), data_, out.size() * sizeof(T));
    return out;
  }

 private:
  void release() {
    if (data_ != nullptr) backend_->deallocate(data_);
    data_ = nullptr;
    capacity_ = size_ = 0;
  }
  void swap(DeviceTensor& o) noexcept {
    std::swap(backend_, o.backend_);
    std::swap(data_, o.data_);
    std::swap(shape_, o.shape_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

  Backend* backend_ = nullptr;
  T* data_ = nullptr;
  Shape shape_;
  int64_t size_ = 0;
  int64_t capacity_ = 0;
};

using Tensor = DeviceTensor<float>;
using IntTensor = DeviceTensor<int32_t>;
using Bf16Tensor = DeviceTensor<uint16_t>;

// Storage for the bf16 copy of an activation of `shape` (a GEMM input, see
// GemmInput), sized under Precision::kBf16; null under fp32, where GEMMs
// read the fp32 values and no copy is written.
inline uint16_t* bf16_copy(Bf16Tensor& t, const Shape& shape) {
  if (t.backend().precision() != Precision::kBf16) return nullptr;
  t.resize(shape);
  return t.data();
}
// That copy as forward kept it, for backward (null under fp32).
inline const uint16_t* bf16_copy(const Bf16Tensor& t) {
  return t.backend().precision() == Precision::kBf16 ? t.data() : nullptr;
}

// The fp32 values of an activation only GEMMs read: t resized to shape, or
// null where the GEMMs read its bf16 copy alone (Backend::bf16_copies_suffice():
// the copy is all that is written and kept).
inline float* gemm_only_values(Tensor& t, const Shape& shape) {
  if (t.backend().bf16_copies_suffice()) return nullptr;
  t.resize(shape);
  return t.data();
}
// Those values as forward kept them, for backward (null: the copy alone).
inline const float* gemm_only_values(const Tensor& t) {
  return t.backend().bf16_copies_suffice() ? nullptr : t.data();
}

// x [shape] as a GEMM input: under bf16 with its copy converted into t (for
// values no op wrote a copy of, e.g. a GEMM's output read by two GEMMs);
// x alone under fp32.
inline GemmInput with_bf16_copy(Bf16Tensor& t, const float* x, const Shape& shape) {
  uint16_t* copy = bf16_copy(t, shape);
  if (copy != nullptr) t.backend().to_bf16(num_elements(shape), x, copy);
  return {x, copy};
}

}  // namespace vmoe
