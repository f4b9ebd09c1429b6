// CudaBackend: a batch's inputs on their way in. Pixels travel as uint8 from
// pinned host memory on a copy stream of their own, into one of two device
// staging buffers used in turn, and are scaled to [-1, 1] on the compute
// stream, so the copy overlaps the step queued before it. Also mixup on the
// device. Semantics: core/backend.h; arithmetic: core/math.h (scale_pixel,
// mix_pair), as the CPU.
#include <cstdint>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_launch.cuh"
#include "core/math.h"

namespace vmoe {
namespace {

__global__ void scale_pixels_kernel(int64_t n, const uint8_t* x, float* y) {
  VMOE_GRID_LOOP(i, n) y[i] = scale_pixel(x[i]);
}

__global__ void mix_pairs_kernel(int64_t pairs, int64_t n, float lambda, float* x) {
  VMOE_GRID_LOOP(i, pairs * n) {
    float* a = x + (i / n) * 2 * n + i % n;
    mix_pair(lambda, a[0], a[n]);
  }
}

}  // namespace

void* CudaBackend::allocate_host(size_t bytes) {
  void* ptr = nullptr;
  // Portable: pinned for every context, so any thread may allocate it.
  VMOE_CUDA_CHECK(cudaHostAlloc(&ptr, bytes > 0 ? bytes : 1, cudaHostAllocPortable));
  return ptr;
}

void CudaBackend::deallocate_host(void* ptr) {
  if (ptr != nullptr) cudaFreeHost(ptr);
}

void CudaBackend::upload_pixels_impl(int64_t n, const uint8_t* host, float* dst) {
  if (n <= 0) return;
  if (copy_stream_ == nullptr) {
    VMOE_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    for (int k = 0; k < 2; ++k) {
      VMOE_CUDA_CHECK(cudaEventCreateWithFlags(&copied_[k], cudaEventDisableTiming));
      VMOE_CUDA_CHECK(cudaEventCreateWithFlags(&consumed_[k], cudaEventDisableTiming));
      VMOE_CUDA_CHECK(cudaEventRecord(consumed_[k], stream_));
    }
  }
  const int k = next_staging_;
  next_staging_ = 1 - k;
  const size_t bytes = static_cast<size_t>(n);
  if (staging_bytes_[k] < bytes) {
    // Its last reader (the scaling two uploads ago) must be done before it
    // goes. Not from the caching allocator: that reuses blocks in the compute
    // stream's order, and the copy stream writes this one out of that order.
    wait_for(consumed_[k]);
    if (staging_[k] != nullptr) VMOE_CUDA_CHECK(cudaFree(staging_[k]));
    staging_[k] = nullptr;
    VMOE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&staging_[k]), bytes));
    staging_bytes_[k] = bytes;
  }
  // The copy waits only for the scaling that last read this slot, then runs
  // beside whatever the compute stream is doing.
  VMOE_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, consumed_[k], 0));
  VMOE_CUDA_CHECK(
      cudaMemcpyAsync(staging_[k], host, bytes, cudaMemcpyHostToDevice, copy_stream_));
  VMOE_CUDA_CHECK(cudaEventRecord(copied_[k], copy_stream_));
  VMOE_CUDA_CHECK(cudaStreamWaitEvent(stream_, copied_[k], 0));
  scale_pixels_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, staging_[k], dst);
  VMOE_CUDA_LAUNCH_CHECK();
  VMOE_CUDA_CHECK(cudaEventRecord(consumed_[k], stream_));
  // `host` may be reused once the copy is done (the step queued before runs on).
  wait_for(copied_[k]);
}

void CudaBackend::mix_pairs(int64_t pairs, int64_t n, float lambda, float* x) {
  if (pairs <= 0 || n <= 0) return;
  mix_pairs_kernel<<<grid_for(pairs * n), kThreads, 0, stream_>>>(pairs, n, lambda, x);
  VMOE_CUDA_LAUNCH_CHECK();
}

}  // namespace vmoe
