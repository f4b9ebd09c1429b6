#include "core/cuda/cuda_allocator.h"

#include "core/cuda/cuda_check.h"

namespace vmoe {

size_t CudaAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  constexpr size_t kSmall = size_t{1} << 20;
  if (bytes <= kSmall) return (bytes + 511) / 512 * 512;
  // Above 1 MiB: the next multiple of 1/8 of the power of two below.
  size_t top = kSmall;
  while (top * 2 <= bytes) top *= 2;
  const size_t step = top / 8;
  return (bytes + step - 1) / step * step;
}

void* CudaAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  const auto it = free_.find(size);
  if (it != free_.end()) {
    void* ptr = it->second;
    free_.erase(it);
    cached_ -= size;
    in_use_ += size;
    return ptr;
  }
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, size);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the sticky-free error, retry without the cache
    release_cached();
    err = cudaMalloc(&ptr, size);
  }
  if (err != cudaSuccess) (void)cudaGetLastError();  // not left for the next launch check
  VMOE_CHECK(err == cudaSuccess, "cudaMalloc of ", size, " bytes failed (", in_use_,
             " bytes in use): ", cudaGetErrorString(err));
  ++mallocs_;
  sizes_[ptr] = size;
  in_use_ += size;
  return ptr;
}

void CudaAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  const auto it = sizes_.find(ptr);
  VMOE_ASSERT(it != sizes_.end());
  in_use_ -= it->second;
  cached_ += it->second;
  free_.emplace(it->second, ptr);
}

void CudaAllocator::release_cached() {
  for (const auto& [size, ptr] : free_) {
    cudaFree(ptr);
    sizes_.erase(ptr);
  }
  free_.clear();
  cached_ = 0;
}

CudaAllocator::~CudaAllocator() {
  for (const auto& [ptr, size] : sizes_) cudaFree(ptr);
}

}  // namespace vmoe
