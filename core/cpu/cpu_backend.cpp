#include "core/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <vector>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/check.h"
#include "core/math.h"

namespace vmoe {
namespace {

CBLAS_TRANSPOSE cblas_trans(Trans t) { return t == Trans::kYes ? CblasTrans : CblasNoTrans; }

}  // namespace

// ---- memory ------------------------------------------------------------------

void* CpuBackend::allocate(size_t bytes) {
  // 64-byte alignment: whole cache lines and aligned AVX-512 loads.
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* ptr = std::aligned_alloc(64, rounded);
  if (ptr == nullptr) throw std::bad_alloc();
  return ptr;
}
void CpuBackend::deallocate(void* ptr) { std::free(ptr); }
void CpuBackend::copy_to_device_impl(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::copy_to_host_impl(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}
void CpuBackend::upload_pixels_impl(int64_t n, const uint8_t* host, float* dst) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = scale_pixel(host[i]);
}

void CpuBackend::zero(void* x, size_t bytes) {
  if (bytes) std::memset(x, 0, bytes);
}

// ---- matrix products ---------------------------------------------------------

namespace {

// A copy of the `rows` x `cols` matrix at x (leading dimension ld) with every
// element rounded to bfloat16: the CPU's emulation of bf16 GEMM inputs.
const float* rounded_to_bf16(const float* x, int rows, int cols, int ld, std::vector<float>& out) {
  const int64_t span = int64_t{rows - 1} * ld + cols;
  out.resize(static_cast<size_t>(span));
#pragma omp simd
  for (int64_t i = 0; i < span; ++i) out[i] = round_to_bf16(x[i]);
  return out.data();
}

}  // namespace

void CpuBackend::gemm(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a,
                      int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  if (precision_ == Precision::kBf16 && k > 0) {
    thread_local std::vector<float> a16, b16;
    a = ta == Trans::kNo ? rounded_to_bf16(a, m, k, lda, a16) : rounded_to_bf16(a, k, m, lda, a16);
    b = tb == Trans::kNo ? rounded_to_bf16(b, k, n, ldb, b16) : rounded_to_bf16(b, n, k, ldb, b16);
  }
  cblas_sgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), m, n, k, alpha, a, lda, b, ldb,
              beta, c, ldc);
}

void CpuBackend::to_bf16(int64_t n, const float* x, uint16_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = vmoe::to_bf16(x[i]);
}

void CpuBackend::from_bf16(int64_t n, const uint16_t* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = vmoe::from_bf16(x[i]);
}

void CpuBackend::gemm_batched(Trans ta, Trans tb, int m, int n, int k, float alpha,
                              const float* a, int lda, const float* b, int ldb, float beta,
                              float* c, int ldc, BatchLevel outer, BatchLevel inner) {
  for (int64_t i = 0; i < outer.count; ++i) {
    for (int64_t j = 0; j < inner.count; ++j) {
      gemm(ta, tb, m, n, k, alpha, a + i * outer.a + j * inner.a, lda,
           b + i * outer.b + j * inner.b, ldb, beta, c + i * outer.c + j * inner.c, ldc);
    }
  }
}

// ---- element-wise --------------------------------------------------------------

void CpuBackend::fill(float* x, int64_t n, float value) { std::fill(x, x + n, value); }

void CpuBackend::scale(float* x, int64_t n, float alpha) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

void CpuBackend::axpy(int64_t n, float alpha, const float* x, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = fmaf(alpha, x[i], y[i]);
}

void CpuBackend::add_bias(int64_t rows, int cols, const float* bias, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

void CpuBackend::bias_grad(int64_t rows, int cols, const float* dy, float* dbias) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = dy + r * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) dbias[c] += row[c];
  }
}

void CpuBackend::bias_gelu(int64_t rows, int cols, const float* bias, float* a, float* g) {
  for (int64_t r = 0; r < rows; ++r) {
    float* ar = a + r * cols;
    float* gr = g + r * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) {
      const float v = ar[c] + bias[c];
      ar[c] = v;
      gr[c] = gelu(v);
    }
  }
}

void CpuBackend::gelu_backward(int64_t n, const float* a, const float* dg, float* da) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) da[i] = dg[i] * gelu_grad(a[i]);
}

void CpuBackend::tanh_forward(int64_t n, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = tanhf(x[i]);
}

void CpuBackend::tanh_backward(int64_t n, const float* y, float* dy) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dy[i] *= tanh_grad(y[i]);
}

// ---- normalisation and softmax ------------------------------------------------------

void CpuBackend::layernorm_forward(int64_t rows, int cols, float eps, const float* x,
                                   const float* gamma, const float* beta, float* y, float* mean,
                                   float* rstd) {
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < cols; ++c) sum += xr[c];
    const float mu = sum * inv_cols;
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int c = 0; c < cols; ++c) sq += (xr[c] - mu) * (xr[c] - mu);
    const float rs = 1.0f / std::sqrt(sq * inv_cols + eps);
#pragma omp simd
    for (int c = 0; c < cols; ++c) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
    mean[r] = mu;
    rstd[r] = rs;
  }
}

void CpuBackend::layernorm_backward(int64_t rows, int cols, const float* x, const float* gamma,
                                    const float* mean, const float* rstd, const float* dy,
                                    float* dx, float* dgamma, float* dbeta) {
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    const float mu = mean[r], rs = rstd[r];
    float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int c = 0; c < cols; ++c) {
      const float xhat = (xr[c] - mu) * rs;
      const float g = dyr[c] * gamma[c];
      sum_g += g;
      sum_gx += g * xhat;
      dgamma[c] += dyr[c] * xhat;
      dbeta[c] += dyr[c];
    }
    const float mean_g = sum_g * inv_cols, mean_gx = sum_gx * inv_cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) {
      const float xhat = (xr[c] - mu) * rs;
      dxr[c] += (dyr[c] * gamma[c] - mean_g - xhat * mean_gx) * rs;
    }
  }
}

void CpuBackend::softmax_forward(int64_t rows, int cols, float scale, float* x) {
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int c = 0; c < cols; ++c) mx = std::max(mx, xr[c]);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < cols; ++c) {
      const float e = exp_fast(scale * (xr[c] - mx));
      xr[c] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int c = 0; c < cols; ++c) xr[c] *= inv;
  }
}

void CpuBackend::softmax_backward(int64_t rows, int cols, float scale, const float* p, float* d) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* pr = p + r * cols;
    float* dr = d + r * cols;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int c = 0; c < cols; ++c) dot += pr[c] * dr[c];
#pragma omp simd
    for (int c = 0; c < cols; ++c) dr[c] = scale * pr[c] * (dr[c] - dot);
  }
}

// ---- ViT embedding and pooling ------------------------------------------------------

void CpuBackend::patchify(int64_t batch, int height, int width, int channels, int patch,
                          const float* images, float* patches) {
  const int gh = height / patch, gw = width / patch;
  const int64_t row_len = static_cast<int64_t>(patch) * channels;  // one patch row, contiguous
  for (int64_t b = 0; b < batch; ++b) {
    const float* img = images + b * height * width * channels;
    for (int py = 0; py < gh; ++py) {
      for (int px = 0; px < gw; ++px) {
        float* out = patches + ((b * gh + py) * gw + px) * patch * row_len;
        for (int y = 0; y < patch; ++y) {
          const float* src = img + ((py * patch + y) * width + px * patch) * channels;
          std::memcpy(out + y * row_len, src, static_cast<size_t>(row_len) * sizeof(float));
        }
      }
    }
  }
}

void CpuBackend::embed_tokens(int64_t batch, int patches, int dim, const float* proj,
                              const float* bias, const float* cls, const float* pos,
                              float* tokens) {
  const int t0 = cls != nullptr ? 1 : 0;
  const int tokens_per_image = patches + t0;
  for (int64_t b = 0; b < batch; ++b) {
    float* out = tokens + b * tokens_per_image * dim;
    if (cls != nullptr) {
#pragma omp simd
      for (int c = 0; c < dim; ++c) out[c] = cls[c] + pos[c];
    }
    for (int i = 0; i < patches; ++i) {
      const float* src = proj + (b * patches + i) * dim;
      const float* p = pos + (t0 + i) * dim;
      float* dst = out + (t0 + i) * dim;
#pragma omp simd
      for (int c = 0; c < dim; ++c) dst[c] = src[c] + bias[c] + p[c];
    }
  }
}

void CpuBackend::embed_tokens_backward(int64_t batch, int patches, int dim, const float* dtokens,
                                       float* dproj, float* dbias, float* dcls, float* dpos) {
  const int t0 = dcls != nullptr ? 1 : 0;
  const int tokens_per_image = patches + t0;
  for (int64_t b = 0; b < batch; ++b) {
    const float* d = dtokens + b * tokens_per_image * dim;
    if (dcls != nullptr) {
#pragma omp simd
      for (int c = 0; c < dim; ++c) {
        dcls[c] += d[c];
        dpos[c] += d[c];
      }
    }
    for (int i = 0; i < patches; ++i) {
      const float* src = d + (t0 + i) * dim;
      float* dp = dpos + (t0 + i) * dim;
      float* out = dproj + (b * patches + i) * dim;
#pragma omp simd
      for (int c = 0; c < dim; ++c) {
        out[c] = src[c];
        dbias[c] += src[c];
        dp[c] += src[c];
      }
    }
  }
}

void CpuBackend::pool_rows(int64_t batch, int tokens, int dim, bool mean, const float* x,
                           float* out) {
  for (int64_t b = 0; b < batch; ++b) {
    const float* xb = x + b * tokens * dim;
    float* ob = out + b * dim;
    if (!mean) {
      std::memcpy(ob, xb, static_cast<size_t>(dim) * sizeof(float));
      continue;
    }
    std::fill(ob, ob + dim, 0.0f);
    for (int t = 0; t < tokens; ++t) {
#pragma omp simd
      for (int c = 0; c < dim; ++c) ob[c] += xb[t * dim + c];
    }
    const float inv = 1.0f / static_cast<float>(tokens);
#pragma omp simd
    for (int c = 0; c < dim; ++c) ob[c] *= inv;
  }
}

void CpuBackend::pool_rows_backward(int64_t batch, int tokens, int dim, bool mean,
                                    const float* dout, float* dx) {
  const float w = mean ? 1.0f / static_cast<float>(tokens) : 1.0f;
  for (int64_t b = 0; b < batch; ++b) {
    const float* db = dout + b * dim;
    for (int t = 0; t < (mean ? tokens : 1); ++t) {
      float* dxr = dx + (b * tokens + t) * dim;
#pragma omp simd
      for (int c = 0; c < dim; ++c) dxr[c] = fmaf(w, db[c], dxr[c]);
    }
  }
}

// ---- losses ------------------------------------------------------------------------

void CpuBackend::softmax_cross_entropy(int64_t rows, int classes, const float* logits,
                                       const int32_t* labels, const float* weight,
                                       float grad_scale, float* loss, float* dlogits) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* z = logits + r * classes;
    float* dz = dlogits + r * classes;
    const float w = weight[r];
    float mx = -INFINITY;
    for (int c = 0; c < classes; ++c) mx = std::max(mx, z[c]);
    float sum = 0.0f;
    for (int c = 0; c < classes; ++c) sum += exp_fast(z[c] - mx);
    const float lse = mx + std::log(sum);
    loss[r] = w * (lse - z[labels[r]]);
    const float g = grad_scale * w;
    for (int c = 0; c < classes; ++c) dz[c] = g * exp_fast(z[c] - lse);
    dz[labels[r]] -= g;
  }
}

void CpuBackend::sigmoid_cross_entropy(int64_t rows, int classes, const float* logits,
                                       const float* targets, const float* weight,
                                       float grad_scale, float* loss, float* dlogits) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* z = logits + r * classes;
    const float* y = targets + r * classes;
    float* dz = dlogits + r * classes;
    const float w = weight[r];
    float sum = 0.0f;
    for (int c = 0; c < classes; ++c) {
      // -y log s(z) - (1-y) log(1-s(z)) = softplus(z) - y z
      sum += softplus(z[c]) - y[c] * z[c];
      dz[c] = grad_scale * w * (sigmoid(z[c]) - y[c]);
    }
    loss[r] = w * sum;
  }
}

// ---- optimisers and reductions --------------------------------------------------------

void CpuBackend::adam_update(int64_t n, float lr, float beta1, float beta2, float eps,
                             float weight_decay, int64_t step, const float* grad, float* param,
                             float* m, float* v) {
  const AdamParams a = adam_params(lr, beta1, beta2, eps, weight_decay, step);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) vmoe::adam_update(a, grad[i], param[i], m[i], v[i]);
}

void CpuBackend::sgd_update(int64_t n, float lr, float momentum, float weight_decay,
                            const float* grad, float* param, float* buf) {
  const SgdParams s{lr, momentum, weight_decay};
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) vmoe::sgd_update(s, grad[i], param[i], buf[i]);
}

void CpuBackend::sum_squares(int64_t n, const float* x, double* out) {
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < n; ++i) total += static_cast<double>(x[i]) * x[i];
  *out = total;
}

void CpuBackend::clip_scale(const double* sq, double expert_divisor, float max_norm, double* norm,
                            float* scale) {
  *scale = clip_factor(sq[0], sq[1], expert_divisor, max_norm, *norm);
}

void CpuBackend::scale_by(int64_t n, const float* factor, float* x) {
  const float f = *factor;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= f;
}

void CpuBackend::mix_pairs(int64_t pairs, int64_t n, float lambda, float* x) {
  for (int64_t p = 0; p < pairs; ++p) {
    float* a = x + 2 * p * n;
    float* b = a + n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) mix_pair(lambda, a[i], b[i]);
  }
}

void CpuBackend::accumulate_columns(int64_t rows, int cols, const float* x, double scale,
                                    double* acc) {
  for (int c = 0; c < cols; ++c) {
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r) sum += x[r * cols + c];
    acc[c] += scale * sum;
  }
}

void CpuBackend::count_top1_hits(int64_t rows, int cols, const float* x, const int32_t* label,
                                 const float* mask, int64_t* hits) {
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (mask != nullptr && mask[r] == 0.0f) continue;
    const float* z = x + r * cols;
    int best = 0;
    for (int c = 1; c < cols; ++c) best = z[c] > z[best] ? c : best;
    n += best == label[r];
  }
  *hits += n;
}

}  // namespace vmoe
