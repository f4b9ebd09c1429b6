// CpuBackend: matrix products, cblas_sgemm for every one; under bf16 the
// inputs rounded to bfloat16 first and bf16 outputs rounded as stored.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/cpu/bf16_outputs.h"
#include "core/cpu/cpu_backend.h"
#include "core/math.h"

namespace vmoe {

using cpu_bf16::write_bf16;

namespace {

CBLAS_TRANSPOSE cblas_trans(Trans t) {
  return t == Trans::kYes ? CblasTrans : CblasNoTrans;
}

// The `rows` x `cols` matrix of `in` (leading dimension ld) with every
// element rounded to bfloat16, as floats: the CPU's emulation of bf16 GEMM
// inputs. From the input's bf16 copy where it has one, else rounded here.
const float* as_bf16_floats(GemmInput in, int rows, int cols, int ld, std::vector<float>& out) {
  const int64_t span = int64_t{rows - 1} * ld + cols;
  out.resize(static_cast<size_t>(span));
  if (in.bf16 != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < span; ++i) out[i] = from_bf16(in.bf16[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < span; ++i) out[i] = round_to_bf16(in.f32[i]);
  }
  return out.data();
}

// Entry (i, j)'s extent along `axis`: `full`, or less where the outer
// level's live rows say so (core/backend_types.h).
int live_extent(int full, LiveAxis axis, const BatchLevel& outer, int64_t i,
                const BatchLevel& inner, int64_t j) {
  if (outer.live == nullptr || outer.live_axis != axis) return full;
  return std::clamp(outer.live[i * inner.count + j], 0, full);
}

// C's rows [from, to) = beta * C: what a skipped product leaves (zeros, not
// 0 * C, under beta 0).
void scale_rows(float* c, int from, int to, int n, int ldc, float beta) {
  if (beta == 1.0f) return;
  for (int r = from; r < to; ++r) {
    float* row = c + int64_t{r} * ldc;
    for (int x = 0; x < n; ++x) row[x] = beta == 0.0f ? 0.0f : beta * row[x];
  }
}

}  // namespace

void CpuBackend::gemm_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a,
                           int lda, GemmInput b, int ldb, float beta, float* c, int ldc) {
  const float* a32 = a.f32;
  const float* b32 = b.f32;
  if (precision_ == Precision::kBf16 && k > 0) {
    thread_local std::vector<float> a16, b16;
    a32 = ta == Trans::kNo ? as_bf16_floats(a, m, k, lda, a16) : as_bf16_floats(a, k, m, lda, a16);
    b32 = tb == Trans::kNo ? as_bf16_floats(b, k, n, ldb, b16) : as_bf16_floats(b, n, k, ldb, b16);
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = time_gemms_ ? Clock::now() : Clock::time_point{};
  cblas_sgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), m, n, k, alpha, a32, lda, b32, ldb,
              beta, c, ldc);
  if (gemm_log_ != nullptr) {
    const std::chrono::duration<double> took =
        time_gemms_ ? Clock::now() - start : Clock::duration{};
    gemm_log_->push_back({ta, tb, m, n, k, lda, ldb, ldc, beta, took.count()});
  }
}

void CpuBackend::to_bf16_impl(int64_t n, const float* x, uint16_t* y) {
  write_bf16(n, x, y);
}

void CpuBackend::from_bf16(int64_t n, const uint16_t* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = vmoe::from_bf16(x[i]);
}

void CpuBackend::gemm_batched_impl(Trans ta, Trans tb, int m, int n, int k, float alpha,
                                   GemmInput a, int lda, GemmInput b, int ldb, float beta, float* c,
                                   int ldc, BatchLevel outer, BatchLevel inner) {
  for (int64_t i = 0; i < outer.count; ++i) {
    for (int64_t j = 0; j < inner.count; ++j) {
      // Live rows only: the rest of C is beta * C, what zero rows give.
      const int mi = live_extent(m, LiveAxis::kM, outer, i, inner, j);
      const int ki = live_extent(k, LiveAxis::kK, outer, i, inner, j);
      float* ci = c + i * outer.c + j * inner.c;
      if (mi > 0 && ki > 0) {
        gemm_impl(ta, tb, mi, n, ki, alpha, a.offset(i * outer.a + j * inner.a), lda,
                  b.offset(i * outer.b + j * inner.b), ldb, beta, ci, ldc);
      }
      scale_rows(ci, ki > 0 ? mi : 0, m, n, ldc, beta);
    }
  }
}

// Emulated: each product into an fp32 buffer (inputs rounded as above), then
// rounded as stored; in blocks of rows, so that the buffer stays small (a
// whole fc1 output would be held as long as the thread lives, which the GPU
// does not do).
void CpuBackend::gemm_batched_to_bf16_impl(Trans ta, Trans tb, int m, int n, int k, float alpha,
                                           GemmInput a, int lda, GemmInput b, int ldb,
                                           uint16_t* c16, int ldc, BatchLevel outer,
                                           BatchLevel inner) {
  const int block = std::clamp((1 << 20) / ldc, 1, m);  // rows: at most 4 MiB of fp32
  thread_local std::vector<float> c;
  c.resize(static_cast<size_t>(block) * ldc);
  for (int64_t i = 0; i < outer.count; ++i) {
    for (int64_t j = 0; j < inner.count; ++j) {
      // Live rows only (as gemm_batched_impl); the rest of C is zero.
      const int ki = live_extent(k, LiveAxis::kK, outer, i, inner, j);
      const int mi = ki > 0 ? live_extent(m, LiveAxis::kM, outer, i, inner, j) : 0;
      uint16_t* ci = c16 + i * outer.c + j * inner.c;
      for (int r0 = 0; r0 < mi; r0 += block) {
        const int rows = std::min(block, mi - r0);
        const int64_t a_rows = ta == Trans::kNo ? int64_t{r0} * lda : r0;  // op(A)'s row r0
        gemm_impl(ta, tb, rows, n, ki, alpha, a.offset(i * outer.a + j * inner.a + a_rows), lda,
                  b.offset(i * outer.b + j * inner.b), ldb, 0.0f, c.data(), ldc);
        uint16_t* out = ci + int64_t{r0} * ldc;
        for (int r = 0; r < rows; ++r)
          write_bf16(n, c.data() + int64_t{r} * ldc, out + int64_t{r} * ldc);
      }
      for (int r = mi; r < m; ++r) std::fill_n(ci + int64_t{r} * ldc, n, uint16_t{0});
    }
  }
}

}  // namespace vmoe
