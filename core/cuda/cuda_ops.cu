// CudaBackend: the dense ops (element-wise, LayerNorm, softmax, ViT embedding
// and pooling). Losses, optimisers and sum_squares are in cuda_train_ops.cu.
// Semantics: core/backend.h; each kernel mirrors its loop in
// core/cpu_backend.cpp (same accumulate-vs-overwrite rules, same expressions,
// the shared bodies of core/math.h).
// Deterministic: no float atomics. Row reductions are one block per row with a
// fixed-shape tree; column reductions run in two passes (per-chunk partial
// sums into scratch, then one thread per column summing the chunks in order),
// and every launch shape depends only on the sizes.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_launch.cuh"
#include "core/cuda/cuda_packs.cuh"
#include "core/math.h"

namespace vmoe {
namespace {

// ---- column sums: out[c] (op)= sum_r f(r, c), in two deterministic passes ----------

constexpr int kColTile = 32, kColLanes = 8;  // block (32 columns, 8 row lanes)

struct ColPlan {
  int64_t chunk_rows;  // rows summed by one block of pass 1
  int chunks;          // partial sums per column
};
ColPlan col_plan(int64_t rows) {
  const int64_t chunk = std::max<int64_t>(64, (rows + 1023) / 1024);  // at most 1024 chunks
  return {chunk, static_cast<int>((rows + chunk - 1) / chunk)};
}

// Pass 1: partial[p, c] = sum of f(r, c) over the rows of chunk p (lanes summed in order).
template <class F>
__global__ void col_partial_kernel(int64_t rows, int64_t cols, int64_t chunk_rows, F f,
                                   float* partial) {
  __shared__ float tile[kColLanes][kColTile];
  const int64_t c = blockIdx.x * int64_t{kColTile} + threadIdx.x;
  const int64_t begin = blockIdx.y * chunk_rows;
  const int64_t end = begin + chunk_rows < rows ? begin + chunk_rows : rows;
  float s = 0.0f;
  if (c < cols)
    for (int64_t r = begin + threadIdx.y; r < end; r += kColLanes) s += f(r, c);
  tile[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int l = 1; l < kColLanes; ++l) s += tile[l][threadIdx.x];
    partial[blockIdx.y * cols + c] = s;
  }
}

// Pass 2: acc(c, sum over chunks p in order of partial[p, c]).
template <class Acc>
__global__ void col_finish_kernel(int64_t cols, int chunks, const float* partial, Acc acc) {
  VMOE_GRID_LOOP(c, cols) {
    float s = 0.0f;
    for (int p = 0; p < chunks; ++p) s += partial[p * cols + c];
    acc(c, s);
  }
}

// Both passes; `partial` is scratch of plan.chunks * cols floats.
template <class F, class Acc>
void column_sums(cudaStream_t stream, float* partial, ColPlan plan, int64_t rows, int64_t cols, F f,
                 Acc acc) {
  const dim3 grid(static_cast<unsigned>((cols + kColTile - 1) / kColTile),
                  static_cast<unsigned>(plan.chunks));
  col_partial_kernel<<<grid, dim3(kColTile, kColLanes), 0, stream>>>(rows, cols, plan.chunk_rows, f,
                                                                     partial);
  VMOE_CUDA_LAUNCH_CHECK();
  col_finish_kernel<<<grid_for(cols), kThreads, 0, stream>>>(cols, plan.chunks, partial, acc);
  VMOE_CUDA_LAUNCH_CHECK();
}

// f: element (r, c) of a row-major matrix with leading dimension ld.
struct RowsOf {
  const float* x;
  int64_t ld;
  __device__ float operator()(int64_t r, int64_t c) const { return x[r * ld + c]; }
};
// Column c = e * cols + j of expert-major rows [experts, rows, cols].
struct ExpertRowsOf {
  const float* x;
  int64_t rows;
  int cols;
  __device__ float operator()(int64_t r, int64_t c) const {
    return x[(c / cols * rows + r) * cols + c % cols];
  }
};
// acc: out[c] += s.
struct AddTo {
  float* out;
  __device__ void operator()(int64_t c, float s) const { out[c] += s; }
};

// ---- element-wise ---------------------------------------------------------------------

// Element-wise kernels run over packs of W floats (cuda_packs.cuh): n is a
// count of packs, and a row's bias packs are cols / W.

// The bias pack of pack i: rows [b * rows_per_bias, (b + 1) * rows_per_bias)
// read bias row b (an expert's bias over its rows; one row for dense layers).
template <int W>
__device__ __forceinline__ Pack<W> bias_pack(const float* bias, int64_t i, int cols,
                                             int64_t rows_per_bias) {
  const int64_t row_packs = cols / W, row = i / row_packs;
  return load<W>(bias, row / rows_per_bias * row_packs + i % row_packs);
}
template <int W>
__global__ void fill_kernel(int64_t n, float value, float* x) {
  Pack<W> v;
  for (int l = 0; l < W; ++l) v.v[l] = value;
  VMOE_GRID_LOOP(i, n) store<W>(x, i, v);
}
template <int W>
__global__ void scale_kernel(int64_t n, float alpha, float* x) {
  VMOE_GRID_LOOP(i, n) {
    Pack<W> v = load<W>(x, i);
    for (int l = 0; l < W; ++l) v.v[l] *= alpha;
    store<W>(x, i, v);
  }
}
template <int W>
__global__ void axpy_kernel(int64_t n, float alpha, const float* x, float* y) {
  VMOE_GRID_LOOP(i, n) {
    const Pack<W> a = load<W>(x, i);
    Pack<W> b = load<W>(y, i);
    for (int l = 0; l < W; ++l) b.v[l] = fmaf(alpha, a.v[l], b.v[l]);
    store<W>(y, i, b);
  }
}
template <int W>
__global__ void add_bias_kernel(int64_t n, int cols, int64_t rows_per_bias, const float* bias,
                                float* y, uint16_t* y16) {
  VMOE_GRID_LOOP(i, n) {
    const Pack<W> b = bias_pack<W>(bias, i, cols, rows_per_bias);
    Pack<W> v = load<W>(y, i);
    for (int l = 0; l < W; ++l) v.v[l] += b.v[l];
    store<W>(y, i, v);
    store_bf16<W>(y16, i, v);
  }
}
template <int W>
__global__ void bias_gelu_kernel(int64_t n, int cols, int64_t rows_per_bias, const float* bias,
                                 float* a, float* g, uint16_t* g16) {
  VMOE_GRID_LOOP(i, n) {
    const Pack<W> b = bias_pack<W>(bias, i, cols, rows_per_bias);
    Pack<W> v = load<W>(a, i), out;
    for (int l = 0; l < W; ++l) gelu_and_grad(v.v[l] + b.v[l], out.v[l], v.v[l]);
    store<W>(a, i, v);
    store<W>(g, i, out);
    store_bf16<W>(g16, i, out);
  }
}
template <int W>
__global__ void gelu_backward_kernel(int64_t n, const float* a, const float* dg, float* da,
                                     uint16_t* da16) {
  VMOE_GRID_LOOP(i, n) {
    const Pack<W> d = load<W>(a, i);
    Pack<W> v = load<W>(dg, i);
    for (int l = 0; l < W; ++l) v.v[l] *= d.v[l];
    store<W>(da, i, v);
    store_bf16<W>(da16, i, v);
  }
}
// y[i] = v, and y16[i] = bfloat16(v) where a bf16 copy is asked for (row kernels).
__device__ __forceinline__ void store(float* y, uint16_t* y16, int64_t i, float v) {
  y[i] = v;
  if (y16 != nullptr) y16[i] = to_bf16(v);
}

// ---- normalisation and softmax (one block per row) -------------------------------------

// residual (nullable) is first added into x: the fused residual add.
__global__ void layernorm_forward_kernel(int64_t rows, int cols, float eps, const float* residual,
                                         float* x, const float* gamma, const float* beta, float* y,
                                         uint16_t* y16, float* mean, float* rstd) {
  __shared__ float red[32];
  const float inv_cols = 1.0f / static_cast<float>(cols);
  VMOE_ROW_LOOP(r, rows) {
    float* xr = x + r * cols;
    float* yr = y + r * cols;
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
                                    float* dx) {
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
    for (int c = tid(); c < cols; c += nthreads()) {
      const float xhat = (xr[c] - mu) * rs;
      dxr[c] += (dyr[c] * gamma[c] - mean_g - xhat * mean_gx) * rs;
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

__global__ void softmax_forward_kernel(int64_t rows, int cols, float scale, float* x,
                                       uint16_t* x16) {
  __shared__ float red[32];
  VMOE_ROW_LOOP(r, rows) {
    float* xr = x + r * cols;
    float mx = -INFINITY;
    for (int c = tid(); c < cols; c += nthreads()) mx = MaxOp{}(mx, xr[c]);
    mx = block_reduce(mx, MaxOp{}, red);
    float sum = 0.0f;
    for (int c = tid(); c < cols; c += nthreads()) {
      const float e = exp_fast(scale * (xr[c] - mx));
      xr[c] = e;
      sum += e;
    }
    const float inv = 1.0f / block_reduce(sum, SumOp{}, red);
    uint16_t* xr16 = x16 != nullptr ? x16 + r * cols : nullptr;
    for (int c = tid(); c < cols; c += nthreads()) store(xr, xr16, c, xr[c] * inv);
  }
}

__global__ void softmax_backward_kernel(int64_t rows, int cols, float scale, const float* p,
                                        float* d, uint16_t* d16) {
  __shared__ float red[32];
  VMOE_ROW_LOOP(r, rows) {
    const float* pr = p + r * cols;
    float* dr = d + r * cols;
    float dot = 0.0f;
    for (int c = tid(); c < cols; c += nthreads()) dot += pr[c] * dr[c];
    dot = block_reduce(dot, SumOp{}, red);
    uint16_t* dr16 = d16 != nullptr ? d16 + r * cols : nullptr;
    for (int c = tid(); c < cols; c += nthreads())
      store(dr, dr16, c, scale * pr[c] * (dr[c] - dot));
  }
}

// ---- ViT embedding and pooling ---------------------------------------------------------

// One thread per patch element o = (((b gh + py) gw + px) P + y) (P C) + e.
__global__ void patchify_kernel(int64_t n, int height, int width, int channels, int patch, int gh,
                                int gw, const float* images, float* patches) {
  const int64_t row_len = int64_t{patch} * channels;  // one patch row, contiguous in the image
  VMOE_GRID_LOOP(o, n) {
    const int64_t e = o % row_len;
    const int64_t q = o / row_len;  // ((b gh + py) gw + px) P + y
    const int64_t y = q % patch;
    const int64_t cell = q / patch;  // (b gh + py) gw + px
    const int64_t px = cell % gw, py = (cell / gw) % gh, b = cell / (int64_t{gw} * gh);
    patches[o] = images[((b * height + py * patch + y) * width + px * patch) * channels + e];
  }
}

// One thread per token element o = (b T + t) D + c; t < t0 is the class token.
__global__ void embed_tokens_kernel(int64_t n, int patches, int dim, int t0, const float* proj,
                                    const float* bias, const float* cls, const float* pos,
                                    float* tokens) {
  const int tokens_per_image = patches + t0;
  VMOE_GRID_LOOP(o, n) {
    const int64_t c = o % dim, bt = o / dim;
    const int64_t t = bt % tokens_per_image, b = bt / tokens_per_image;
    tokens[o] = t < t0 ? cls[c] + pos[c]
                       : proj[(b * patches + (t - t0)) * dim + c] + bias[c] + pos[t * dim + c];
  }
}

// dproj[b, i, :] = dtokens[b, t0 + i, :] (overwrite).
__global__ void embed_dproj_kernel(int64_t n, int patches, int dim, int t0, const float* dtokens,
                                   float* dproj) {
  const int tokens_per_image = patches + t0;
  VMOE_GRID_LOOP(o, n) {
    const int64_t c = o % dim, bi = o / dim;
    const int64_t i = bi % patches, b = bi / patches;
    dproj[o] = dtokens[(b * tokens_per_image + t0 + i) * dim + c];
  }
}

// With s[t D + c] = sum_b dtokens[b, t, c]: dpos += s, dcls += s[0, :], and s is
// kept in `sums` for dbias.
struct EmbedAcc {
  float *dpos, *dcls, *sums;
  int dim;
  __device__ void operator()(int64_t c, float s) const {
    dpos[c] += s;
    if (dcls != nullptr && c < dim) dcls[c] += s;
    sums[c] = s;
  }
};

// dbias[c] += sum over patch tokens t >= t0 of sums[t D + c], t in order.
__global__ void embed_dbias_kernel(int dim, int t0, int tokens_per_image, const float* sums,
                                   float* dbias) {
  VMOE_GRID_LOOP(c, dim) {
    float s = 0.0f;
    for (int t = t0; t < tokens_per_image; ++t) s += sums[int64_t{t} * dim + c];
    dbias[c] += s;
  }
}

// out[b, c] = x[b, 0, c], or the mean over tokens summed in order (as the CPU).
__global__ void pool_rows_kernel(int64_t n, int tokens, int dim, bool mean, const float* x,
                                 float* out) {
  VMOE_GRID_LOOP(o, n) {
    const int64_t c = o % dim, b = o / dim;
    const float* xb = x + b * tokens * dim;
    if (!mean) {
      out[o] = xb[c];
      continue;
    }
    float s = 0.0f;
    for (int t = 0; t < tokens; ++t) s += xb[int64_t{t} * dim + c];
    out[o] = s * (1.0f / static_cast<float>(tokens));
  }
}

// dx[b, t, c] += w dout[b, c] for t < rows_per_image (T for mean, 1 for the token).
__global__ void pool_rows_backward_kernel(int64_t n, int tokens, int rows_per_image, int dim,
                                          float w, const float* dout, float* dx) {
  VMOE_GRID_LOOP(o, n) {
    const int64_t c = o % dim, bt = o / dim;
    const int64_t t = bt % rows_per_image, b = bt / rows_per_image;
    float& d = dx[(b * tokens + t) * dim + c];
    d = fmaf(w, dout[b * dim + c], d);
  }
}

// x = tanh(x); dy *= 1 - y^2 (the pre-logits layer).
__global__ void tanh_kernel(int64_t n, float* x) {
  VMOE_GRID_LOOP(i, n) x[i] = tanhf(x[i]);
}
__global__ void tanh_backward_kernel(int64_t n, const float* y, float* dy) {
  VMOE_GRID_LOOP(i, n) dy[i] *= tanh_grad(y[i]);
}

}  // namespace

// ---- element-wise ---------------------------------------------------------------------

void CudaBackend::fill(float* x, int64_t n, float value) {
  if (n <= 0) return;
  VMOE_LAUNCH_PACKED(fill_kernel, pack_width(n, {x}), n, value, x);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::scale(float* x, int64_t n, float alpha) {
  if (n <= 0) return;
  VMOE_LAUNCH_PACKED(scale_kernel, pack_width(n, {x}), n, alpha, x);
  VMOE_CUDA_LAUNCH_CHECK();
}

// y += alpha x
void CudaBackend::axpy(int64_t n, float alpha, const float* x, float* y) {
  if (n <= 0) return;
  VMOE_LAUNCH_PACKED(axpy_kernel, pack_width(n, {x, y}), n, alpha, x, y);
  VMOE_CUDA_LAUNCH_CHECK();
}

// y[r, :] += bias
void CudaBackend::add_bias(int64_t rows, int cols, const float* bias, float* y, uint16_t* y16) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  const int width = cols % 4 == 0 ? pack_width(n, {bias, y}, {y16}) : 1;
  VMOE_LAUNCH_PACKED(add_bias_kernel, width, n, cols, rows, bias, y, y16);
  VMOE_CUDA_LAUNCH_CHECK();
}

// dbias += sum_r dy[r, :]
void CudaBackend::bias_grad(int64_t rows, int cols, const float* dy, float* dbias) {
  if (rows <= 0 || cols <= 0) return;
  const ColPlan plan = col_plan(rows);
  auto* partial = static_cast<float*>(scratch(sizeof(float) * plan.chunks * cols));
  column_sums(stream_, partial, plan, rows, cols, RowsOf{dy, cols}, AddTo{dbias});
}

// g = gelu(a + bias); a = gelu'(a + bias)
void CudaBackend::bias_gelu(int64_t rows, int cols, const float* bias, float* a, float* g,
                            uint16_t* g16) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  const int width = cols % 4 == 0 ? pack_width(n, {bias, a, g}, {g16}) : 1;
  VMOE_LAUNCH_PACKED(bias_gelu_kernel, width, n, cols, rows, bias, a, g, g16);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::expert_add_bias(int experts, int64_t rows, int cols, const float* bias,
                                  float* y) {
  const int64_t n = experts * rows * cols;
  if (n <= 0) return;
  const int width = cols % 4 == 0 ? pack_width(n, {bias, y}) : 1;
  VMOE_LAUNCH_PACKED(add_bias_kernel, width, n, cols, rows, bias, y, nullptr);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::expert_bias_gelu(int experts, int64_t rows, int cols, const float* bias, float* a,
                                   float* g, uint16_t* g16) {
  const int64_t n = experts * rows * cols;
  if (n <= 0) return;
  const int width = cols % 4 == 0 ? pack_width(n, {bias, a, g}, {g16}) : 1;
  VMOE_LAUNCH_PACKED(bias_gelu_kernel, width, n, cols, rows, bias, a, g, g16);
  VMOE_CUDA_LAUNCH_CHECK();
}

// dbias[e, c] += sum over expert e's rows of dy: one column sum over
// experts * cols columns.
void CudaBackend::expert_bias_grad(int experts, int64_t rows, int cols, const float* dy,
                                   float* dbias) {
  if (experts <= 0 || rows <= 0 || cols <= 0) return;
  const ColPlan plan = col_plan(rows);
  const int64_t columns = int64_t{experts} * cols;
  auto* partial = static_cast<float*>(scratch(sizeof(float) * plan.chunks * columns));
  column_sums(stream_, partial, plan, rows, columns, ExpertRowsOf{dy, rows, cols}, AddTo{dbias});
}

// da = dg * a, a = bias_gelu's derivative (overwrite)
void CudaBackend::gelu_backward(int64_t n, const float* a, const float* dg, float* da,
                                uint16_t* da16) {
  if (n <= 0) return;
  VMOE_LAUNCH_PACKED(gelu_backward_kernel, pack_width(n, {a, dg, da}, {da16}), n, a, dg, da, da16);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::tanh_forward(int64_t n, float* x) {
  if (n <= 0) return;
  tanh_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, x);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::tanh_backward(int64_t n, const float* y, float* dy) {
  if (n <= 0) return;
  tanh_backward_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, y, dy);
  VMOE_CUDA_LAUNCH_CHECK();
}

// ---- normalisation and softmax --------------------------------------------------------

// y = (x - mean) rstd gamma + beta per row; writes mean and rstd [rows].
void CudaBackend::layernorm_forward(int64_t rows, int cols, float eps, const float* x,
                                    const float* gamma, const float* beta, float* y, uint16_t* y16,
                                    float* mean, float* rstd) {
  if (rows <= 0) return;
  layernorm_forward_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(
      rows, cols, eps, nullptr, const_cast<float*>(x), gamma, beta, y, y16, mean, rstd);
  VMOE_CUDA_LAUNCH_CHECK();
}

// x += residual; y = LayerNorm(x), in one pass over the row.
void CudaBackend::add_layernorm_forward(int64_t rows, int cols, float eps, const float* residual,
                                        float* x, const float* gamma, const float* beta, float* y,
                                        uint16_t* y16, float* mean, float* rstd) {
  if (rows <= 0) return;
  layernorm_forward_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(
      rows, cols, eps, residual, x, gamma, beta, y, y16, mean, rstd);
  VMOE_CUDA_LAUNCH_CHECK();
}

// dx += ..., dgamma += sum_r dy xhat, dbeta += sum_r dy.
void CudaBackend::layernorm_backward(int64_t rows, int cols, const float* x, const float* gamma,
                                     const float* mean, const float* rstd, const float* dy,
                                     float* dx, float* dgamma, float* dbeta) {
  if (rows <= 0 || cols <= 0) return;
  layernorm_dx_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(rows, cols, x, gamma,
                                                                          mean, rstd, dy, dx);
  VMOE_CUDA_LAUNCH_CHECK();
  // dgamma and dbeta as one column sum over 2 * cols columns.
  const ColPlan plan = col_plan(rows);
  auto* partial = static_cast<float*>(scratch(sizeof(float) * plan.chunks * 2 * cols));
  column_sums(stream_, partial, plan, rows, int64_t{2} * cols,
              LayerNormParamGrad{x, dy, mean, rstd, cols}, LayerNormParamAcc{dgamma, dbeta, cols});
}

// x[r, :] = softmax(scale * x[r, :]) in place.
void CudaBackend::softmax_forward(int64_t rows, int cols, float scale, float* x, uint16_t* x16) {
  if (rows <= 0 || cols <= 0) return;
  softmax_forward_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(rows, cols, scale, x,
                                                                             x16);
  VMOE_CUDA_LAUNCH_CHECK();
}

// d = scale * p * (d - <p, d>) in place.
void CudaBackend::softmax_backward(int64_t rows, int cols, float scale, const float* p, float* d,
                                   uint16_t* d16) {
  if (rows <= 0 || cols <= 0) return;
  softmax_backward_kernel<<<grid_rows(rows), row_threads(cols), 0, stream_>>>(rows, cols, scale, p,
                                                                              d, d16);
  VMOE_CUDA_LAUNCH_CHECK();
}

// ---- ViT embedding and pooling ----------------------------------------------------------

// images [B, H, W, C] -> patches [B (H/P) (W/P), P P C], (py, px, c) order.
void CudaBackend::patchify(int64_t batch, int height, int width, int channels, int patch,
                           const float* images, float* patches) {
  const int gh = height / patch, gw = width / patch;
  const int64_t n = batch * gh * gw * patch * patch * channels;
  if (n <= 0) return;
  patchify_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, height, width, channels, patch, gh, gw,
                                                         images, patches);
  VMOE_CUDA_LAUNCH_CHECK();
}

// tokens[b, t0 + i] = proj[b, i] + bias + pos[t0 + i]; tokens[b, 0] = cls + pos[0] if cls.
void CudaBackend::embed_tokens(int64_t batch, int patches, int dim, const float* proj,
                               const float* bias, const float* cls, const float* pos,
                               float* tokens) {
  const int t0 = cls != nullptr ? 1 : 0;
  const int64_t n = batch * (patches + t0) * dim;
  if (n <= 0) return;
  embed_tokens_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, patches, dim, t0, proj, bias, cls,
                                                             pos, tokens);
  VMOE_CUDA_LAUNCH_CHECK();
}

// dproj = patch rows of dtokens (overwrite); dpos, dcls (nullable: no class
// token) and dbias accumulate. One column sum over [batch, T D] gives all three.
void CudaBackend::embed_tokens_backward(int64_t batch, int patches, int dim, const float* dtokens,
                                        float* dproj, float* dbias, float* dcls, float* dpos) {
  const int t0 = dcls != nullptr ? 1 : 0;
  const int tokens_per_image = patches + t0;
  const int64_t cols = int64_t{tokens_per_image} * dim;
  if (batch <= 0 || cols <= 0) return;
  const int64_t n = batch * patches * dim;
  if (n > 0) {
    embed_dproj_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, patches, dim, t0, dtokens, dproj);
    VMOE_CUDA_LAUNCH_CHECK();
  }
  const ColPlan plan = col_plan(batch);
  auto* partial = static_cast<float*>(scratch(sizeof(float) * (plan.chunks + 1) * cols));
  float* sums = partial + plan.chunks * cols;  // [T D] per-column sums over the batch
  column_sums(stream_, partial, plan, batch, cols, RowsOf{dtokens, cols},
              EmbedAcc{dpos, dcls, sums, dim});
  embed_dbias_kernel<<<grid_for(dim), kThreads, 0, stream_>>>(dim, t0, tokens_per_image, sums,
                                                              dbias);
  VMOE_CUDA_LAUNCH_CHECK();
}

// out[b] = x[b, 0] (token pooling) or the mean over the T rows (gap).
void CudaBackend::pool_rows(int64_t batch, int tokens, int dim, bool mean, const float* x,
                            float* out) {
  const int64_t n = batch * dim;
  if (n <= 0) return;
  pool_rows_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, tokens, dim, mean, x, out);
  VMOE_CUDA_LAUNCH_CHECK();
}

// dx[b, 0] += dout[b] (token), or dx[b, t] += dout[b] / T for every t (gap).
void CudaBackend::pool_rows_backward(int64_t batch, int tokens, int dim, bool mean,
                                     const float* dout, float* dx) {
  const float w = mean ? 1.0f / static_cast<float>(tokens) : 1.0f;
  const int rows_per_image = mean ? tokens : 1;
  const int64_t n = batch * rows_per_image * dim;
  if (n <= 0) return;
  pool_rows_backward_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, tokens, rows_per_image, dim,
                                                                   w, dout, dx);
  VMOE_CUDA_LAUNCH_CHECK();
}

}  // namespace vmoe
