// The CUDA backend's mixed precision: bfloat16 conversions with the shared
// rounding of core/math.h, and GEMMs on bfloat16 inputs (converted into
// temporary buffers) with fp32 accumulation and output (cublasGemmEx).
#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_launch.cuh"
#include "core/math.h"

namespace vmoe {
namespace {

__global__ void to_bf16_kernel(int64_t n, const float* x, uint16_t* y) {
  VMOE_GRID_LOOP(i, n) y[i] = to_bf16(x[i]);
}

__global__ void from_bf16_kernel(int64_t n, const uint16_t* x, float* y) {
  VMOE_GRID_LOOP(i, n) y[i] = from_bf16(x[i]);
}

cublasOperation_t op(Trans t) { return t == Trans::kYes ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Elements spanned by `count` matrices of rows x cols (leading dimension ld)
// spaced `stride` apart (the region a bf16 copy must cover).
int64_t span(int rows, int cols, int ld, int64_t count, int64_t stride) {
  return (count - 1) * stride + int64_t{rows - 1} * ld + cols;
}

}  // namespace

void CudaBackend::to_bf16(int64_t n, const float* x, uint16_t* y) {
  if (n == 0) return;
  to_bf16_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, x, y);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::from_bf16(int64_t n, const uint16_t* x, float* y) {
  if (n == 0) return;
  from_bf16_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, x, y);
  VMOE_CUDA_LAUNCH_CHECK();
}

// Row-major C = alpha op(A) op(B) + beta C, as column-major Cᵀ = op(B)ᵀ op(A)ᵀ
// (see gemm), with A and B in bfloat16. `batches` matrices, `stride_*` apart.
void CudaBackend::gemm_bf16(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a,
                            int lda, int64_t stride_a, const float* b, int ldb, int64_t stride_b,
                            float beta, float* c, int ldc, int64_t stride_c, int64_t batches) {
  const int64_t na = span(ta == Trans::kNo ? m : k, ta == Trans::kNo ? k : m, lda, batches, stride_a);
  const int64_t nb = span(tb == Trans::kNo ? k : n, tb == Trans::kNo ? n : k, ldb, batches, stride_b);
  auto* a16 = static_cast<uint16_t*>(allocator_.allocate(na * sizeof(uint16_t)));
  auto* b16 = static_cast<uint16_t*>(allocator_.allocate(nb * sizeof(uint16_t)));
  to_bf16(na, a, a16);
  to_bf16(nb, b, b16);
  VMOE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      cublas_, op(tb), op(ta), n, m, k, &alpha, b16, CUDA_R_16BF, ldb, stride_b, a16, CUDA_R_16BF,
      lda, stride_a, &beta, c, CUDA_R_32F, ldc, stride_c, static_cast<int>(batches),
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  // Stream order: later work reusing these blocks runs after this GEMM.
  allocator_.deallocate(a16);
  allocator_.deallocate(b16);
}

}  // namespace vmoe
