// CudaBackend: LayerNorm (with the fused residual add) and softmax.
// Semantics: core/backend.h; each kernel mirrors its loop in
// core/cpu/cpu_loops.cpp (same expressions, the shared bodies of core/math.h).
// Deterministic: rows up to 1024 values are one warp per row, held in
// registers (read once, written once); longer rows one block per row; both
// reduce in a fixed-shape tree. LayerNorm's parameter gradients are column
// sums in two passes (cuda_column_sums.cuh), the first fused into the dx
// kernel for rows a warp holds.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_column_sums.cuh"
#include "core/cuda/cuda_launch.cuh"
#include "core/cuda/cuda_packs.cuh"
#include "core/math.h"

namespace vmoe {
namespace {

// ---- normalisation and softmax (one block per row) -------------------------------------

// residual (nullable) is first added into x: the fused residual add.
__global__ void layernorm_forward_kernel(int64_t rows, int cols, float eps, const float* residual,
                                         float* x, const float* gamma, const float* beta, float* y,
                                         uint16_t* y16, float* mean, float* rstd) {
  __shared__ float red[32];
  const float inv_cols = 1.0f / static_cast<float>(cols);
  VMOE_ROW_LOOP(r, rows) {
    float* xr = x + r * cols;
    float* yr = y != nullptr ? y + r * cols : nullptr;  // null: bf16 copy alone
    float sum = 0.0f;
    if (residual != nullptr) {
      const float* rr = residual + r * cols;
      for (int c = tid(); c < cols; c += nthreads()) {
        xr[c] += rr[c];  // each thread rereads only its own columns below
        sum += xr[c];
      }
    } else {
      for (int c = tid(); c < cols; c += nthreads()) sum += xr[c];
    }
    const float mu = block_reduce(sum, SumOp{}, red) * inv_cols;
    float sq = 0.0f;
    for (int c = tid(); c < cols; c += nthreads()) sq += (xr[c] - mu) * (xr[c] - mu);
    const float rs = 1.0f / sqrtf(block_reduce(sq, SumOp{}, red) * inv_cols + eps);
    uint16_t* yr16 = y16 != nullptr ? y16 + r * cols : nullptr;
    for (int c = tid(); c < cols; c += nthreads())
      store(yr, yr16, c, (xr[c] - mu) * rs * gamma[c] + beta[c]);
    if (tid() == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

// dx += (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)) rstd, per row.
__global__ void layernorm_dx_kernel(int64_t rows, int cols, const float* x, const float* gamma,
                                    const float* mean, const float* rstd, const float* dy,
                                    float* dx, uint16_t* dx16) {
  __shared__ float red[32];
  const float inv_cols = 1.0f / static_cast<float>(cols);
  VMOE_ROW_LOOP(r, rows) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    const float mu = mean[r], rs = rstd[r];
    float sum_g = 0.0f, sum_gx = 0.0f;
    for (int c = tid(); c < cols; c += nthreads()) {
      const float xhat = (xr[c] - mu) * rs;
      const float g = dyr[c] * gamma[c];
      sum_g += g;
      sum_gx += g * xhat;
    }
    const float mean_g = block_reduce(sum_g, SumOp{}, red) * inv_cols;
    const float mean_gx = block_reduce(sum_gx, SumOp{}, red) * inv_cols;
    uint16_t* dxr16 = dx16 != nullptr ? dx16 + r * cols : nullptr;
    for (int c = tid(); c < cols; c += nthreads()) {
      const float xhat = (xr[c] - mu) * rs;
      store(dxr, dxr16, c, dxr[c] + (dyr[c] * gamma[c] - mean_g - xhat * mean_gx) * rs);
    }
  }
}

// Column c < cols: dy * xhat (dgamma); c >= cols: dy (dbeta).
struct LayerNormParamGrad {
  const float *x, *dy, *mean, *rstd;
  int cols;
  __device__ float operator()(int64_t r, int64_t c) const {
    if (c >= cols) return dy[r * cols + (c - cols)];
    const float xhat = (x[r * cols + c] - mean[r]) * rstd[r];
    return dy[r * cols + c] * xhat;
  }
};
struct LayerNormParamAcc {
  float *dgamma, *dbeta;
  int cols;
  __device__ void operator()(int64_t c, float s) const {
    if (c < cols)
      dgamma[c] += s;
    else
      dbeta[c - cols] += s;
  }
};

// Rows longer than a warp's registers hold: one block per row, three passes
// (the exponentials computed again in the last: p may be x, or null). Each
// thread reads and writes only its own columns.
__global__ void softmax_forward_kernel(int64_t rows, int cols, int ld, float scale, const float* x,
                                       float* p, uint16_t* p16) {
  __shared__ float red[32];
  VMOE_ROW_LOOP(r, rows) {
    const float* xr = x + r * ld;
    float mx = -INFINITY;
    for (int c = tid(); c < cols; c += nthreads()) mx = MaxOp{}(mx, xr[c]);
    mx = block_reduce(mx, MaxOp{}, red);
    float sum = 0.0f;
    for (int c = tid(); c < cols; c += nthreads()) sum += exp_fast(scale * (xr[c] - mx));
    const float inv = 1.0f / block_reduce(sum, SumOp{}, red);
    float* pr = p != nullptr ? p + r * ld : nullptr;
    uint16_t* pr16 = p16 != nullptr ? p16 + r * ld : nullptr;
    for (int c = tid(); c < cols; c += nthreads())
      store(pr, pr16, c, exp_fast(scale * (xr[c] - mx)) * inv);
    for (int c = cols + tid(); c < ld; c += nthreads()) store(pr, pr16, c, 0.0f);
  }
}

// Element c of a probability row: from its bf16 copy where one is given.
__device__ __forceinline__ float prob(const float* pr, const uint16_t* pr16, int c) {
  return pr16 != nullptr ? from_bf16(pr16[c]) : pr[c];
}

// d may be dp (each thread reads its elements before writing them) or null.
__global__ void softmax_backward_kernel(int64_t rows, int cols, int ld, float scale, const float* p,
                                        const uint16_t* p16, const float* dp, float* d,
                                        uint16_t* d16) {
  __shared__ float red[32];
  VMOE_ROW_LOOP(r, rows) {
    const float* pr = p != nullptr ? p + r * ld : nullptr;
    const uint16_t* pr16 = p16 != nullptr ? p16 + r * ld : nullptr;
    const float* dpr = dp + r * ld;
    float* dr = d != nullptr ? d + r * ld : nullptr;
    float dot = 0.0f;
    for (int c = tid(); c < cols; c += nthreads()) dot += prob(pr, pr16, c) * dpr[c];
    dot = block_reduce(dot, SumOp{}, red);
    uint16_t* dr16 = d16 != nullptr ? d16 + r * ld : nullptr;
    for (int c = tid(); c < cols; c += nthreads())
      store(dr, dr16, c, scale * prob(pr, pr16, c) * (dpr[c] - dot));
    for (int c = cols + tid(); c < ld; c += nthreads()) store(dr, dr16, c, 0.0f);
  }
}

// Rows of up to 32 * N packs of W: one warp per row, read once and written
// once (the attention scores [B, H, T, T] are the step's largest activation).
// Lane l holds packs l, l + 32, ...; W = 4 (float4 loads, 8-byte bf16 stores)
// where the row stride and the pointers allow, as for the head-major scores.
// Loads are straight-line, at a clamped pack, and masked after: no load waits
// in a branch. Columns past `cols` up to `ld` are written as zeros.
template <int N, int W>
__global__ void softmax_forward_warp_kernel(int64_t rows, int cols, int ld, float scale,
                                            const float* x, float* p, uint16_t* p16) {
  const int l = lane_id(), packs = (cols + W - 1) / W, row_packs = ld / W;
  VMOE_WARP_ROW_LOOP(r, rows) {
    const float* xr = x + r * ld;
    Pack<W> v[N];
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = load<W>(xr, min(l + 32 * j, packs - 1));
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < N; ++j)
#pragma unroll
      for (int e = 0; e < W; ++e) {
        v[j].v[e] = (l + 32 * j) * W + e < cols ? v[j].v[e] : -INFINITY;
        mx = MaxOp{}(mx, v[j].v[e]);
      }
    mx = warp_reduce(mx, MaxOp{});
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < N; ++j)
#pragma unroll
      for (int e = 0; e < W; ++e) {
        v[j].v[e] = (l + 32 * j) * W + e < cols ? exp_fast(scale * (v[j].v[e] - mx)) : 0.0f;
        sum += v[j].v[e];
      }
    const float inv = 1.0f / warp_reduce(sum, SumOp{});
    float* pr = p != nullptr ? p + r * ld : nullptr;  // may be x's row: read above
    uint16_t* pr16 = p16 != nullptr ? p16 + r * ld : nullptr;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if (l + 32 * j >= packs) continue;
#pragma unroll
      for (int e = 0; e < W; ++e) v[j].v[e] *= inv;
      store<W>(pr, pr16, l + 32 * j, v[j]);
    }
    for (int g = packs + l; g < row_packs; g += 32) store<W>(pr, pr16, g, Pack<W>{});
  }
}

template <int N, int W>
__global__ void softmax_backward_warp_kernel(int64_t rows, int cols, int ld, float scale,
                                             const float* p, const uint16_t* p16, const float* dp,
                                             float* d, uint16_t* d16) {
  const int l = lane_id(), packs = (cols + W - 1) / W, row_packs = ld / W;
  VMOE_WARP_ROW_LOOP(r, rows) {
    const float* pr = p != nullptr ? p + r * ld : nullptr;
    const uint16_t* pr16 = p16 != nullptr ? p16 + r * ld : nullptr;
    const float* dpr = dp + r * ld;
    float* dr = d != nullptr ? d + r * ld : nullptr;
    Pack<W> pv[N], dv[N];
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const int g = min(l + 32 * j, packs - 1);
      pv[j] = pr16 != nullptr ? load_bf16<W>(pr16, g) : load<W>(pr, g);
      dv[j] = load<W>(dpr, g);
    }
    float dot = 0.0f;
#pragma unroll
    for (int j = 0; j < N; ++j)
#pragma unroll
      for (int e = 0; e < W; ++e) {
        const bool in = (l + 32 * j) * W + e < cols;
        pv[j].v[e] = in ? pv[j].v[e] : 0.0f;
        dv[j].v[e] = in ? dv[j].v[e] : 0.0f;
        dot += pv[j].v[e] * dv[j].v[e];
      }
    dot = warp_reduce(dot, SumOp{});
    uint16_t* dr16 = d16 != nullptr ? d16 + r * ld : nullptr;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if (l + 32 * j >= packs) continue;
#pragma unroll
      for (int e = 0; e < W; ++e)
        dv[j].v[e] = (l + 32 * j) * W + e < cols ? scale * pv[j].v[e] * (dv[j].v[e] - dot) : 0.0f;
      store<W>(dr, dr16, l + 32 * j, dv[j]);
    }
    for (int g = packs + l; g < row_packs; g += 32) store<W>(dr, dr16, g, Pack<W>{});
  }
}

// Calls launch(std::integral_constant<int, N>{}) with the smallest N in
// {1, 2, 4, 8, 16, 24, 32} (at most MaxN) such that a warp holds `cols` in N
// registers per lane; false (nothing launched) for longer rows.
template <int MaxN = 32, class Launch>
bool with_row_registers(int cols, Launch&& launch) {
  if (cols <= 32) return launch(std::integral_constant<int, 1>{}), true;
  if (cols <= 64) return launch(std::integral_constant<int, 2>{}), true;
  if (cols <= 128) return launch(std::integral_constant<int, 4>{}), true;
  if (cols <= 256) return launch(std::integral_constant<int, 8>{}), true;
  if constexpr (MaxN >= 32) {
    if (cols <= 512) return launch(std::integral_constant<int, 16>{}), true;
    if (cols <= 768) return launch(std::integral_constant<int, 24>{}), true;  // D of ViT-B
    if (cols <= 1024) return launch(std::integral_constant<int, 32>{}), true;
  }
  return false;
}

// LayerNorm of rows of up to 32 * N (residual, nullable, first added into x):
// one warp per row, x read once.
template <int N>
__global__ void layernorm_forward_warp_kernel(int64_t rows, int cols, float eps,
                                              const float* residual, float* x, const float* gamma,
                                              const float* beta, float* y, uint16_t* y16,
                                              float* mean, float* rstd) {
  const int l = lane_id();
  const float inv_cols = 1.0f / static_cast<float>(cols);
  VMOE_WARP_ROW_LOOP(r, rows) {
    float* xr = x + r * cols;
    const float* rr = residual != nullptr ? residual + r * cols : nullptr;
    float v[N];
    float sum = 0.0f;
    // Every load of the row before any store: a store to x between them
    // would make each next load wait for it (x and residual may alias).
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const int c = l + 32 * j;
      v[j] = 0.0f;
      if (c < cols) v[j] = rr != nullptr ? xr[c] + rr[c] : xr[c];
      sum += v[j];
    }
    if (rr != nullptr) {
#pragma unroll
      for (int j = 0; j < N; ++j)
        if (l + 32 * j < cols) xr[l + 32 * j] = v[j];
    }
    const float mu = warp_reduce(sum, SumOp{}) * inv_cols;
    float sq = 0.0f;
#pragma unroll
    for (int j = 0; j < N; ++j)
      if (l + 32 * j < cols) sq += (v[j] - mu) * (v[j] - mu);
    const float rs = 1.0f / sqrtf(warp_reduce(sq, SumOp{}) * inv_cols + eps);
    float* yr = y != nullptr ? y + r * cols : nullptr;  // null: bf16 copy alone
    uint16_t* yr16 = y16 != nullptr ? y16 + r * cols : nullptr;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const int c = l + 32 * j;
      if (c < cols) store(yr, yr16, c, (v[j] - mu) * rs * gamma[c] + beta[c]);
    }
    if (l == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

// LayerNorm's whole backward for rows of up to 32 * N, x and dy read once:
// block b takes rows [b * chunk_rows, ...), one warp per row; each lane sums
// dy * xhat and dy of its columns over its rows in registers, the block's
// warps add theirs in order, and the block writes partial[b, 0:cols] (dgamma)
// and partial[b, cols:2 cols] (dbeta) for the column sums' ordered finish.
// Shared memory: 2 * cols floats.
template <int N>
__global__ void layernorm_backward_warp_kernel(int64_t rows, int cols, int64_t chunk_rows,
                                               const float* x, const float* gamma,
                                               const float* mean, const float* rstd,
                                               const float* dy, float* dx, uint16_t* dx16,
                                               float* partial) {
  extern __shared__ float block_sums[];
  const int l = lane_id(), w = tid() >> 5, warps = nthreads() >> 5;
  const float inv_cols = 1.0f / static_cast<float>(cols);
  float dgamma[N], dbeta[N];
#pragma unroll
  for (int j = 0; j < N; ++j) dgamma[j] = dbeta[j] = 0.0f;
  const int64_t begin = blockIdx.x * chunk_rows;
  const int64_t end = min64(begin + chunk_rows, rows);
  for (int64_t r = begin + w; r < end; r += warps) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    const float mu = mean[r], rs = rstd[r];
    float* dxr = dx + r * cols;
    // The row's dx is read with x and dy, before any store: read after a
    // store to dx or dx16 (which may alias it), each load waited for the
    // store before it, one round trip per element (B/16's 25,216 x 768 on
    // an H200: 342 us a call that way, 134 us this way).
    float xhat[N], g[N], acc[N];
    float sum_g = 0.0f, sum_gx = 0.0f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const int c = l + 32 * j;
      xhat[j] = g[j] = acc[j] = 0.0f;
      if (c < cols) {
        const float d = dyr[c];
        xhat[j] = (xr[c] - mu) * rs;
        acc[j] = dxr[c];
        g[j] = d * gamma[c];
        dgamma[j] += d * xhat[j];
        dbeta[j] += d;
      }
      sum_g += g[j];
      sum_gx += g[j] * xhat[j];
    }
    const float mean_g = warp_reduce(sum_g, SumOp{}) * inv_cols;
    const float mean_gx = warp_reduce(sum_gx, SumOp{}) * inv_cols;
    uint16_t* dxr16 = dx16 != nullptr ? dx16 + r * cols : nullptr;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const int c = l + 32 * j;
      if (c < cols) store(dxr, dxr16, c, acc[j] + (g[j] - mean_g - xhat[j] * mean_gx) * rs);
    }
  }
  for (int v = 0; v < warps; ++v) {  // warp 0's sums, then warp 1's added, ...
    if (w == v) {
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const int c = l + 32 * j;
        if (c < cols) {
          block_sums[c] = v == 0 ? dgamma[j] : block_sums[c] + dgamma[j];
          block_sums[cols + c] = v == 0 ? dbeta[j] : block_sums[cols + c] + dbeta[j];
        }
      }
    }
    __syncthreads();
  }
  for (int c = tid(); c < 2 * cols; c += nthreads())
    partial[blockIdx.x * int64_t{2} * cols + c] = block_sums[c];
}

}  // namespace

// ---- normalisation and softmax --------------------------------------------------------

// y = (x - mean) rstd gamma + beta per row; writes mean and rstd [rows].
void CudaBackend::layernorm_forward(int64_t rows, int cols, float eps, const float* x,
                                    const float* gamma, const float* beta, float* y, uint16_t* y16,
                                    float* mean, float* rstd) {
  // x is only written when a residual is given.
  add_layernorm_forward(rows, cols, eps, nullptr, const_cast<float*>(x), gamma, beta, y, y16, mean,
                        rstd);
}

// x += residual; y = LayerNorm(x), in one pass over the row.
void CudaBackend::add_layernorm_forward(int64_t rows, int cols, float eps, const float* residual,
                                        float* x, const float* gamma, const float* beta, float* y,
                                        uint16_t* y16, float* mean, float* rstd) {
  if (rows <= 0) return;
  const bool warps = with_row_registers(cols, [&](auto n) {
    layernorm_forward_warp_kernel<decltype(n)::value>
        <<<grid_warp_rows(rows), kThreads, 0, stream_>>>(rows, cols, eps, residual, x, gamma, beta,
                                                         y, y16, mean, rstd);
  });
  if (!warps)
    layernorm_forward_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(
        rows, cols, eps, residual, x, gamma, beta, y, y16, mean, rstd);
  VMOE_CUDA_LAUNCH_CHECK();
}

// dx += ..., dgamma += sum_r dy xhat, dbeta += sum_r dy; dx16 = bfloat16(dx).
void CudaBackend::layernorm_backward(int64_t rows, int cols, const float* x, const float* gamma,
                                     const float* mean, const float* rstd, const float* dy,
                                     float* dx, uint16_t* dx16, float* dgamma, float* dbeta) {
  if (rows <= 0 || cols <= 0) return;
  const ColPlan plan = col_plan(rows);
  auto* partial = static_cast<float*>(scratch(sizeof(float) * plan.chunks * 2 * cols));
  const LayerNormParamAcc acc{dgamma, dbeta, cols};
  const bool warps = with_row_registers(cols, [&](auto n) {
    layernorm_backward_warp_kernel<decltype(n)::value>
        <<<plan.chunks, kThreads, sizeof(float) * 2 * cols, stream_>>>(
            rows, cols, plan.chunk_rows, x, gamma, mean, rstd, dy, dx, dx16, partial);
  });
  if (warps) {
    VMOE_CUDA_LAUNCH_CHECK();
    finish_column_sums(stream_, partial, plan.chunks, int64_t{2} * cols, acc);
    return;
  }
  // Longer rows: a block per row for dx, then dgamma and dbeta as one column
  // sum over 2 * cols columns.
  layernorm_dx_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(rows, cols, x, gamma,
                                                                          mean, rstd, dy, dx, dx16);
  VMOE_CUDA_LAUNCH_CHECK();
  column_sums(stream_, partial, plan, rows, int64_t{2} * cols,
              LayerNormParamGrad{x, dy, mean, rstd, cols}, acc);
}

// p[r, :] = softmax(scale * x[r, :]); p may be x, or null (the copy alone).
void CudaBackend::softmax_forward(int64_t rows, int cols, int ld, float scale, float* x, float* p,
                                  uint16_t* p16) {
  if (rows <= 0 || cols <= 0) return;
  // Packs of 4 floats (a lane holds at most 8) where the stride and pointers allow.
  const bool packed =
      pack_width(ld, {x, p}, {p16}) == 4 && with_row_registers<8>((cols + 3) / 4, [&](auto n) {
        softmax_forward_warp_kernel<decltype(n)::value, 4>
            <<<grid_warp_rows(rows), kThreads, 0, stream_>>>(rows, cols, ld, scale, x, p, p16);
      });
  const bool warps =
      packed || with_row_registers(cols, [&](auto n) {
        softmax_forward_warp_kernel<decltype(n)::value, 1>
            <<<grid_warp_rows(rows), kThreads, 0, stream_>>>(rows, cols, ld, scale, x, p, p16);
      });
  if (!warps)
    softmax_forward_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(rows, cols, ld,
                                                                               scale, x, p, p16);
  VMOE_CUDA_LAUNCH_CHECK();
}

// d = scale * p * (dp - <p, dp>), in place when d is dp; p from p16 where given.
void CudaBackend::softmax_backward(int64_t rows, int cols, int ld, float scale, const float* p,
                                   const uint16_t* p16, const float* dp, float* d, uint16_t* d16) {
  if (rows <= 0 || cols <= 0) return;
  const bool packed = pack_width(ld, {p, dp, d}, {p16, d16}) == 4 &&
                      with_row_registers<8>((cols + 3) / 4, [&](auto n) {
                        softmax_backward_warp_kernel<decltype(n)::value, 4>
                            <<<grid_warp_rows(rows), kThreads, 0, stream_>>>(rows, cols, ld, scale,
                                                                             p, p16, dp, d, d16);
                      });
  const bool warps = packed || with_row_registers(cols, [&](auto n) {
                       softmax_backward_warp_kernel<decltype(n)::value, 1>
                           <<<grid_warp_rows(rows), kThreads, 0, stream_>>>(rows, cols, ld, scale,
                                                                            p, p16, dp, d, d16);
                     });
  if (!warps)
    softmax_backward_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(
        rows, cols, ld, scale, p, p16, dp, d, d16);
  VMOE_CUDA_LAUNCH_CHECK();
}

}  // namespace vmoe
