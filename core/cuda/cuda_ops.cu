// CudaBackend: LayerNorm (with the fused residual add), softmax, the ViT
// embedding and pooling. Element-wise ops are in cuda_elementwise.cu; losses,
// optimisers and sum_squares in cuda_train_ops.cu.
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

}  // namespace

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
