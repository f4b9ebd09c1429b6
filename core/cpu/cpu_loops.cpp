#include "core/cpu/cpu_loops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cpu/cpu_isa.h"
#include "core/cpu/cpu_lanes.h"
#include "core/math.h"
#include "core/routing_math.h"

namespace vmoe {

const char* cpu_isa_level() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  if (__builtin_cpu_supports("x86-64-v4")) return "AVX-512 (x86-64-v4)";
  if (__builtin_cpu_supports("x86-64-v3")) return "AVX2 (x86-64-v3)";
  if (__builtin_cpu_supports("x86-64-v2")) return "SSE4.2 (x86-64-v2)";
  return "SSE2 (x86-64)";
#else
  return "this CPU's baseline";
#endif
}

const char* cpu_loops_isa() {
#if VMOE_CPU_CLONED
  return cpu_isa_level();  // the clones reach x86-64-v4, the highest level named
#elif defined(__AVX512F__)
  return "AVX-512 (x86-64-v4)";
#elif defined(__AVX2__)
  return "AVX2 (x86-64-v3)";
#elif defined(__SSE4_2__)
  return "SSE4.2 (x86-64-v2)";
#else
  return "the build's baseline";
#endif
}

namespace cpu_loops {

// ---- element-wise --------------------------------------------------------------

VMOE_CPU_CLONES void scale(float* x, int64_t n, float alpha) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

VMOE_CPU_CLONES void axpy(int64_t n, float alpha, const float* x, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = fmaf(alpha, x[i], y[i]);
}

VMOE_CPU_CLONES void add_bias(int64_t rows, int cols, const float* bias, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

VMOE_CPU_CLONES void bias_grad(int64_t rows, int cols, const float* dy, float* dbias) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = dy + r * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) dbias[c] += row[c];
  }
}

VMOE_CPU_CLONES void bias_gelu(int64_t rows, int cols, const float* bias, float* a, float* g) {
  for (int64_t r = 0; r < rows; ++r) {
    float* ar = a + r * cols;
    float* gr = g + r * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) {
      float g, d;
      gelu_and_grad(ar[c] + bias[c], g, d);
      ar[c] = d;
      gr[c] = g;
    }
  }
}

VMOE_CPU_CLONES void gelu_backward(int64_t n, const float* d, const float* dg, float* da) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) da[i] = dg[i] * d[i];
}

VMOE_CPU_CLONES void tanh_backward(int64_t n, const float* y, float* dy) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dy[i] *= tanh_grad(y[i]);
}

// ---- normalisation ----------------------------------------------------------------

namespace {

// One row of LayerNorm: yr = (xr - mean) * rstd * gamma + beta.
VMOE_CPU_INLINE void layernorm_row(int cols, float eps, const float* xr, const float* gamma,
                                   const float* beta, float* yr, float* mean, float* rstd) {
  const float inv_cols = 1.0f / static_cast<float>(cols);
  const float mu = lane_sum<float>(cols, [&](int64_t c) { return xr[c]; }) * inv_cols;
  const float sq = lane_sum<float>(cols, [&](int64_t c) { return (xr[c] - mu) * (xr[c] - mu); });
  const float rs = 1.0f / std::sqrt(sq * inv_cols + eps);
#pragma omp simd
  for (int c = 0; c < cols; ++c) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
  *mean = mu;
  *rstd = rs;
}

}  // namespace

VMOE_CPU_CLONES void layernorm_forward(int64_t rows, int cols, float eps, const float* x,
                                       const float* gamma, const float* beta, float* y, float* mean,
                                       float* rstd) {
  for (int64_t r = 0; r < rows; ++r)
    layernorm_row(cols, eps, x + r * cols, gamma, beta, y + r * cols, mean + r, rstd + r);
}

// The row is normalised while it is still in cache from the add.
VMOE_CPU_CLONES void add_layernorm_forward(int64_t rows, int cols, float eps, const float* residual,
                                           float* x, const float* gamma, const float* beta,
                                           float* y, float* mean, float* rstd) {
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    const float* rr = residual + r * cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) xr[c] += rr[c];
    layernorm_row(cols, eps, xr, gamma, beta, y + r * cols, mean + r, rstd + r);
  }
}

VMOE_CPU_CLONES void layernorm_backward(int64_t rows, int cols, const float* x, const float* gamma,
                                        const float* mean, const float* rstd, const float* dy,
                                        float* dx, float* dgamma, float* dbeta) {
  const float inv_cols = 1.0f / static_cast<float>(cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    const float mu = mean[r], rs = rstd[r];
    // One pass for the parameter gradients and both row sums (lane_sum's
    // lanes and tree, so its bits).
    float sum_g[kLanes] = {}, sum_gx[kLanes] = {};
    auto step = [&](int64_t c, int l) {
      const float xhat = (xr[c] - mu) * rs;
      const float g = dyr[c] * gamma[c];
      dgamma[c] += dyr[c] * xhat;
      dbeta[c] += dyr[c];
      sum_g[l] += g;
      sum_gx[l] += g * xhat;
    };
    for_lanes(cols, step);
    const float mean_g = lane_tree(sum_g, Plus{}) * inv_cols;
    const float mean_gx = lane_tree(sum_gx, Plus{}) * inv_cols;
#pragma omp simd
    for (int c = 0; c < cols; ++c) {
      const float xhat = (xr[c] - mu) * rs;
      dxr[c] += (dyr[c] * gamma[c] - mean_g - xhat * mean_gx) * rs;
    }
  }
}

// ---- ViT embedding and pooling ------------------------------------------------------

VMOE_CPU_CLONES void embed_tokens(int64_t batch, int patches, int dim, const float* proj,
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

VMOE_CPU_CLONES void embed_tokens_backward(int64_t batch, int patches, int dim,
                                           const float* dtokens, float* dproj, float* dbias,
                                           float* dcls, float* dpos) {
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

VMOE_CPU_CLONES void pool_rows(int64_t batch, int tokens, int dim, bool mean, const float* x,
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

VMOE_CPU_CLONES void pool_rows_backward(int64_t batch, int tokens, int dim, bool mean,
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

// ---- optimisers and reductions --------------------------------------------------------

VMOE_CPU_CLONES void adam_update(int64_t n, const AdamParams& params, const float* grad,
                                 float* param, float* m, float* v) {
  const AdamParams a = params;  // a copy no store can alias: its fields stay in registers
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    // Through registers: stored, m and v would be loaded back (the arrays
    // may alias), and a 64-byte load from a store just made stalls.
    float p = param[i], mi = m[i], vi = v[i];
    vmoe::adam_update(a, grad[i], p, mi, vi);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

VMOE_CPU_CLONES void sgd_update(int64_t n, const SgdParams& params, const float* grad, float* param,
                                float* buf) {
  const SgdParams s = params;  // as adam_update
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {  // through registers, as adam_update
    float p = param[i], b = buf[i];
    vmoe::sgd_update(s, grad[i], p, b);
    param[i] = p;
    buf[i] = b;
  }
}

VMOE_CPU_CLONES void sum_squares(int64_t n, const float* x, double* out) {
  *out = lane_sum<double>(n, [&](int64_t i) { return static_cast<double>(x[i]) * x[i]; });
}

VMOE_CPU_CLONES void mix_pairs(int64_t pairs, int64_t n, float lambda, float* x) {
  for (int64_t p = 0; p < pairs; ++p) {
    float* a = x + 2 * p * n;
    float* b = a + n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) mix_pair(lambda, a[i], b[i]);
  }
}

// ---- expert buffers --------------------------------------------------------------------

VMOE_CPU_CLONES void moe_combine(int64_t items, int k, int item_rows, int dim, const float* buf,
                                 const int32_t* row, const float* gate, float* y) {
  const int64_t n = int64_t{item_rows} * dim;
  for (int64_t i = 0; i < items; ++i) {
    float* out = y + i * n;
    std::fill(out, out + n, 0.0f);
    for (int c = 0; c < k; ++c) {
      if (row[i * k + c] < 0) continue;
      const float* src = buf + int64_t{row[i * k + c]} * dim;
      const float w = gate[i * k + c];
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) out[j] = fmaf(w, src[j], out[j]);
    }
  }
}

VMOE_CPU_CLONES void moe_combine_backward(int64_t items, int k, int item_rows, int dim,
                                          const float* dy, const float* buf, const int32_t* row,
                                          const float* gate, float* dbuf, float* dgate) {
  const int64_t n = int64_t{item_rows} * dim;
  for (int64_t i = 0; i < items; ++i) {
    const float* d = dy + i * n;
    for (int c = 0; c < k; ++c) {
      if (row[i * k + c] < 0) continue;
      const float* out = buf + int64_t{row[i * k + c]} * dim;
      float* dout = dbuf + int64_t{row[i * k + c]} * dim;
      const float w = gate[i * k + c];
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) dout[j] = w * d[j];
      dgate[i * k + c] += lane_sum<float>(n, [&](int64_t j) { return d[j] * out[j]; });
    }
  }
}

VMOE_CPU_CLONES void moe_dispatch_backward(int64_t items, int k, int item_rows, int dim,
                                           const float* dbuf, const int32_t* row, float* dx) {
  const int64_t n = int64_t{item_rows} * dim;
  for (int64_t i = 0; i < items; ++i) {
    float* out = dx + i * n;
    std::fill(out, out + n, 0.0f);
    for (int c = 0; c < k; ++c) {
      if (row[i * k + c] < 0) continue;
      const float* src = dbuf + int64_t{row[i * k + c]} * dim;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) out[j] += src[j];
    }
  }
}

// ---- routing ---------------------------------------------------------------------------

// Per-element erfc and exp: scalar code at the baseline calls libm for
// each fmaf, so this is cloned with the loops.
VMOE_CPU_CLONES void router_aux_losses(const RouterAuxArgs& a) {
  const int E = a.experts, S = a.items;
  const float inv_s = 1.0f / static_cast<float>(S);
  std::vector<float> importance(E), load(E), gshard_frac(E), gshard_prob(E);
  std::vector<float> d_importance(E), d_load(E), dp_importance(E), dp_gshard(E);
  for (int64_t g = 0; g < a.groups; ++g) {
    const int64_t first = g * S;
    std::fill(importance.begin(), importance.end(), 0.0f);
    std::fill(load.begin(), load.end(), 0.0f);
    std::fill(gshard_frac.begin(), gshard_frac.end(), 0.0f);
    std::fill(gshard_prob.begin(), gshard_prob.end(), 0.0f);
    float z_loss = 0.0f;
    for (int s = 0; s < S; ++s) {
      const int64_t r = first + s;
      const float* p = a.probs + r * E;
      const float* pn = a.noisy_probs + r * E;
      const float* z = a.logits + r * E;
      const float lse = logsumexp_row(z, E);
      z_loss += lse * lse * inv_s;
      for (int e = 0; e < E; ++e) {
        importance[e] += p[e];
        gshard_prob[e] += pn[e] * inv_s;
      }
      gshard_frac[a.top_index[r * a.k]] += inv_s;
      if (a.sigma > 0.0f) {
        const float thr = a.noisy_logits[r * E + a.top_index[r * a.k + a.k - 1]];
        for (int e = 0; e < E; ++e) load[e] += normal_cdf((z[e] - thr) / a.sigma) * inv_s;
      }
    }
    float* losses = a.group_losses + g * 4;
    losses[0] = cv_squared(importance.data(), E, d_importance.data());
    losses[1] = a.sigma > 0.0f ? cv_squared(load.data(), E, d_load.data()) : 0.0f;
    float gshard = 0.0f;
    for (int e = 0; e < E; ++e) gshard += gshard_frac[e] * gshard_prob[e];
    losses[2] = static_cast<float>(E) * gshard;  // E^2 * mean_e(f_e P_e)
    losses[3] = z_loss;

    const float wi = a.importance_weight * a.grad_scale, wg = a.gshard_weight * a.grad_scale;
    for (int e = 0; e < E; ++e) {
      dp_importance[e] = wi * d_importance[e];
      dp_gshard[e] = wg * static_cast<float>(E) * gshard_frac[e] * inv_s;
    }
    const AuxGradTerms terms{.experts = E,
                             .inv_items = inv_s,
                             .sigma = a.sigma,
                             .load = a.load_weight * a.grad_scale,
                             .z = a.z_weight * a.grad_scale,
                             .dp_importance = wi != 0.0f ? dp_importance.data() : nullptr,
                             .dp_gshard = wg != 0.0f ? dp_gshard.data() : nullptr,
                             .d_load = d_load.data()};
    for (int s = 0; s < S; ++s) {
      const int64_t r = first + s;
      const float* z = a.logits + r * E;
      const int kth = a.top_index[r * a.k + a.k - 1];
      const float lse = terms.z != 0.0f ? logsumexp_row(z, E) : 0.0f;
      const float thr = a.sigma > 0.0f ? a.noisy_logits[r * E + kth] : 0.0f;
      add_aux_loss_grad(terms, a.probs + r * E, a.noisy_probs + r * E, z, lse, thr, kth,
                        a.d_logits + r * E);
    }
  }
}

}  // namespace cpu_loops
}  // namespace vmoe
