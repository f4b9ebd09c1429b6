// The CUDA backend's mixed precision: bfloat16 conversions with the shared
// rounding of core/math.h, and GEMMs on bfloat16 inputs with fp32
// accumulation and fp32 output, or bf16 for outputs only bf16 reads consume
// (cublasGemmEx). An input's bf16 copy is used as it is; an input without
// one is converted into a temporary buffer.
#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_launch.cuh"
#include "core/cuda/cuda_packs.cuh"
#include "core/math.h"

namespace vmoe {
namespace {

// n counts packs of W values (cuda_packs.cuh).
template <int W>
__global__ void to_bf16_kernel(int64_t n, const float* x, uint16_t* y) {
  VMOE_GRID_LOOP(i, n) store_bf16<W>(y, i, load<W>(x, i));
}

template <int W>
__global__ void from_bf16_kernel(int64_t n, const uint16_t* x, float* y) {
  VMOE_GRID_LOOP(i, n) store<W>(y, i, load_bf16<W>(x, i));
}

cublasOperation_t op(Trans t) { return t == Trans::kYes ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Elements spanned by every rows x cols matrix (leading dimension ld) of both
// batch levels, whose strides are `outer` and `inner` (the region a bf16 copy
// must cover).
int64_t extent(int rows, int cols, int ld, int64_t outer_count, int64_t outer_stride,
               int64_t inner_count, int64_t inner_stride) {
  return (outer_count - 1) * outer_stride + (inner_count - 1) * inner_stride +
         int64_t{rows - 1} * ld + cols;
}

}  // namespace

void CudaBackend::to_bf16_impl(int64_t n, const float* x, uint16_t* y) {
  if (n == 0) return;
  VMOE_LAUNCH_PACKED(to_bf16_kernel, pack_width(n, {x}, {y}), n, x, y);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::from_bf16(int64_t n, const uint16_t* x, float* y) {
  if (n == 0) return;
  VMOE_LAUNCH_PACKED(from_bf16_kernel, pack_width(n, {y}, {x}), n, x, y);
  VMOE_CUDA_LAUNCH_CHECK();
}

// Row-major C = alpha op(A) op(B) + beta C, as column-major Cᵀ = op(B)ᵀ op(A)ᵀ
// (see gemm), with A and B in bfloat16: an input without a bf16 copy is
// converted once for the whole call (converting per matrix would convert
// overlapping strided views, e.g. the heads of one QKV buffer, many times).
void CudaBackend::gemm_bf16(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a,
                            int lda, GemmInput b, int ldb, float beta, void* c,
                            cudaDataType_t c_type, int ldc, BatchLevel outer, BatchLevel inner) {
  const size_t c_size = c_type == CUDA_R_16BF ? sizeof(uint16_t) : sizeof(float);
  // The input's bf16 copy, or a converted temporary (freed after the call).
  const auto bf16_of = [&](GemmInput in, int rows, int cols, int ld, int64_t outer_stride,
                           int64_t inner_stride) -> const uint16_t* {
    if (in.bf16 != nullptr) return in.bf16;
    const int64_t n_elems =
        extent(rows, cols, ld, outer.count, outer_stride, inner.count, inner_stride);
    auto* tmp = static_cast<uint16_t*>(allocator_.allocate(n_elems * sizeof(uint16_t)));
    to_bf16_impl(n_elems, in.f32, tmp);
    return tmp;
  };
  const uint16_t* a16 =
      bf16_of(a, ta == Trans::kNo ? m : k, ta == Trans::kNo ? k : m, lda, outer.a, inner.a);
  const uint16_t* b16 =
      bf16_of(b, tb == Trans::kNo ? k : n, tb == Trans::kNo ? n : k, ldb, outer.b, inner.b);
  const auto [loop, batch] = loop_and_batch(outer, inner);
  for (int64_t o = 0; o < loop.count; ++o) {
    VMOE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        cublas_, op(tb), op(ta), n, m, k, &alpha, b16 + o * loop.b, CUDA_R_16BF, ldb, batch.b,
        a16 + o * loop.a, CUDA_R_16BF, lda, batch.a, &beta,
        static_cast<char*>(c) + o * loop.c * static_cast<int64_t>(c_size), c_type, ldc, batch.c,
        static_cast<int>(batch.count), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  // Stream order: later work reusing these blocks runs after these GEMMs.
  if (a.bf16 == nullptr) allocator_.deallocate(const_cast<uint16_t*>(a16));
  if (b.bf16 == nullptr) allocator_.deallocate(const_cast<uint16_t*>(b16));
}

// C (beta 0) as bfloat16 alone: cuBLAS rounds as it stores.
void CudaBackend::gemm_batched_to_bf16_impl(Trans ta, Trans tb, int m, int n, int k, float alpha,
                                            GemmInput a, int lda, GemmInput b, int ldb,
                                            uint16_t* c16, int ldc, BatchLevel outer,
                                            BatchLevel inner) {
  gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, 0.0f, c16, CUDA_R_16BF, ldc, outer, inner);
}

}  // namespace vmoe
