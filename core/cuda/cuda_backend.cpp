#include "core/cuda/cuda_backend.h"

#include "core/attention.h"
#include "core/cuda/cuda_check.h"

namespace vmoe {

void CudaBackend::wait_for(cudaStream_t stream) const {
  const WaitScope scope(*this, "a wait for the GPU (NCCL collectives in flight)");
  VMOE_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CudaBackend::wait_for(cudaEvent_t event) const {
  const WaitScope scope(*this, "a wait for the GPU (NCCL collectives in flight)");
  VMOE_CUDA_CHECK(cudaEventSynchronize(event));
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error for the caller
    return 0;
  }
  return count;
}

namespace {

// The device memory behind the caching allocator: nullptr when the GPU is full.
void* device_malloc(size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t err = cudaMalloc(&ptr, bytes);
  if (err != cudaSuccess) (void)cudaGetLastError();  // not left for the next launch check
  if (err == cudaErrorMemoryAllocation) return nullptr;
  VMOE_CUDA_CHECK(err);
  return ptr;
}
void device_free(void* ptr) {
  cudaFree(ptr);
}

}  // namespace

CudaBackend::CudaBackend(int device)
    : device_(device), allocator_(SystemMemory{device_malloc, device_free, "GPU"}) {
  const int count = cuda_device_count();
  VMOE_CHECK(count > 0, "the CUDA backend needs a GPU, and this process sees none");
  VMOE_CHECK(device >= 0 && device < count, "CUDA device ", device, " does not exist (", count,
             " visible)");
  VMOE_CUDA_CHECK(cudaSetDevice(device));
  VMOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  VMOE_CUBLAS_CHECK(cublasCreate(&cublas_));
  VMOE_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // fp32 GEMMs stay fp32: no TF32 unless asked for (the tests compare with the CPU).
  VMOE_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  // Attention head-major, tokens padded to a multiple of 8: strided per-head
  // GEMMs over T = 197 run on cuBLAS's unaligned (align1) kernels; padded,
  // they run on sm90 ones. B/16 bf16 on an H100: 1,368 images/s against
  // 1,296 strided (train_step_bench --attention_pad_to=0 for strided).
  set_attention_pad_to(kGpuAttentionPadTo);
  score_row_align_ = 8;
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  if (copy_stream_ != nullptr) {
    cudaStreamSynchronize(copy_stream_);
    for (int k = 0; k < 2; ++k) {
      if (staging_[k] != nullptr) cudaFree(staging_[k]);
      cudaEventDestroy(copied_[k]);
      cudaEventDestroy(consumed_[k]);
    }
    cudaStreamDestroy(copy_stream_);
  }
  for (cudaEvent_t e : marks_) cudaEventDestroy(e);
  if (scratch_ != nullptr) allocator_.deallocate(scratch_);
  cublasDestroy(cublas_);
  drop_capture();
  cudaStreamDestroy(stream_);
}

int64_t CudaBackend::device_memory_free() {
  size_t free = 0, total = 0;
  VMOE_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return static_cast<int64_t>(free);
}

bool CudaBackend::set_tf32(bool on) {
  VMOE_CUBLAS_CHECK(
      cublasSetMathMode(cublas_, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return true;
}

int CudaBackend::time_mark() {
  if (marks_used_ == marks_.size()) {
    cudaEvent_t e = nullptr;
    VMOE_CUDA_CHECK(cudaEventCreate(&e));
    marks_.push_back(e);
  }
  VMOE_CUDA_CHECK(cudaEventRecord(marks_[marks_used_], stream_));
  return static_cast<int>(marks_used_++);
}

double CudaBackend::seconds_between(int from, int to) {
  cudaEvent_t a = marks_.at(static_cast<size_t>(from)), b = marks_.at(static_cast<size_t>(to));
  wait_for(b);
  float ms = 0.0f;
  VMOE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms * 1e-3;
}

void CudaBackend::clear_time_marks() { marks_used_ = 0; }

void* CudaBackend::allocate(size_t bytes) { return allocator_.allocate(bytes); }

// Blocks freed while kernels may still use them are only reused by later
// work on the same stream, which runs after those kernels: stream order makes
// the caching safe without events.
void CudaBackend::deallocate(void* ptr) { allocator_.deallocate(ptr); }

void CudaBackend::copy_to_device_impl(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  VMOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  // The host buffer may be reused as soon as we return.
  wait_for(stream_);
}

void CudaBackend::copy_to_host_impl(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  VMOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  wait_for(stream_);
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  VMOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::zero(void* x, size_t bytes) {
  if (bytes == 0) return;
  VMOE_CUDA_CHECK(cudaMemsetAsync(x, 0, bytes, stream_));
}

void CudaBackend::synchronize_impl() {
  wait_for(stream_);
}

void* CudaBackend::scratch(size_t bytes) {
  if (bytes > scratch_bytes_) {
    if (scratch_ != nullptr) allocator_.deallocate(scratch_);
    scratch_ = allocator_.allocate(bytes);
    scratch_bytes_ = bytes;
  }
  return scratch_;
}

namespace {

cublasOperation_t op(Trans t) { return t == Trans::kYes ? CUBLAS_OP_T : CUBLAS_OP_N; }

}  // namespace

// Row-major C = alpha op(A) op(B) + beta C is column-major Cᵀ = op(B)ᵀ op(A)ᵀ:
// cuBLAS gets B first, with m and n swapped.
void CudaBackend::gemm_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a,
                            int lda, GemmInput b, int ldb, float beta, float* c, int ldc) {
  if (precision_ == Precision::kBf16 && k > 0) {
    gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, CUDA_R_32F, ldc, {}, {});
    return;
  }
  VMOE_CUBLAS_CHECK(
      cublasSgemm(cublas_, op(tb), op(ta), n, m, k, &alpha, b.f32, ldb, a.f32, lda, &beta, c, ldc));
}

void CudaBackend::gemm_batched_impl(Trans ta, Trans tb, int m, int n, int k, float alpha,
                                    GemmInput a, int lda, GemmInput b, int ldb, float beta,
                                    float* c, int ldc, BatchLevel outer, BatchLevel inner) {
  if (precision_ == Precision::kBf16 && k > 0) {
    gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, CUDA_R_32F, ldc, outer, inner);
    return;
  }
  const auto [loop, batch] = loop_and_batch(outer, inner);
  for (int64_t o = 0; o < loop.count; ++o) {
    VMOE_CUBLAS_CHECK(
        cublasSgemmStridedBatched(cublas_, op(tb), op(ta), n, m, k, &alpha, b.f32 + o * loop.b, ldb,
                                  batch.b, a.f32 + o * loop.a, lda, batch.a, &beta, c + o * loop.c,
                                  ldc, batch.c, static_cast<int>(batch.count)));
  }
}

}  // namespace vmoe
