// Routing bodies shared by the CPU and CUDA backends (__host__ __device__),
// so the GPU makes the CPU's decisions and the CPU tests cover both.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/math.h"

#include "core/hd.h"

namespace vmoe {

// The k largest values of one row, descending; ties go to the lower index
// (strict >), as the routers' tests fix.
VMOE_HD void top_k_row(const float* row, int cols, int k, int32_t* index, float* value) {
  for (int c = 0; c < k; ++c) {
    int best = -1;
    for (int j = 0; j < cols; ++j) {
      bool taken = false;
      for (int p = 0; p < c; ++p) taken |= index[p] == j;
      if (!taken && (best < 0 || row[j] > row[best])) best = j;
    }
    index[c] = best;
    value[c] = row[best];
  }
}

// log(sum_e exp(z[e])) of one row of router logits (the z-loss).
VMOE_HD float logsumexp_row(const float* z, int count) {
  float mx = z[0];
  for (int e = 1; e < count; ++e) mx = mx < z[e] ? z[e] : mx;  // std::max's rule
  float sum = 0.0f;
  for (int e = 0; e < count; ++e) sum += exp_nonpositive(z[e] - mx);
  return mx + logf(sum);
}

// Coefficient of variation squared, var(x) / mean(x)^2 (population
// variance), and its gradient dL/dx into grad[count].
VMOE_HD float cv_squared(const float* x, int count, float* grad) {
  const float n = static_cast<float>(count);
  float mean = 0;
  for (int e = 0; e < count; ++e) mean += x[e];
  mean /= n;
  float var = 0;
  for (int e = 0; e < count; ++e) var += (x[e] - mean) * (x[e] - mean);
  var /= n;
  for (int e = 0; e < count; ++e)
    grad[e] = 2.0f / n * ((x[e] - mean) / (mean * mean) - var / (mean * mean * mean));
  return var / (mean * mean);
}

// d += p .* (dp - <p, dp>): the backward of a softmax row.
VMOE_HD void add_softmax_backward(int count, const float* p, const float* dp, float* d) {
  float dot = 0;
  for (int e = 0; e < count; ++e) dot += p[e] * dp[e];
  for (int e = 0; e < count; ++e) d[e] += p[e] * (dp[e] - dot);
}

// What the auxiliary losses' gradient needs of one group. The importance and
// GShard terms are per-group vectors (already weighted), so they are formed
// once per group; null when their weight is 0.
struct AuxGradTerms {
  int experts = 0;
  float inv_items = 0;  // 1 / S
  float sigma = 0;      // router noise std (the load loss needs > 0)
  float load = 0, z = 0;  // weights (times the gradient scale)
  const float* dp_importance = nullptr;  // [E] weight * dCV^2/d importance, w.r.t. probs
  const float* dp_gshard = nullptr;      // [E] weight * E * top-1 share / S, w.r.t. noisy probs
  const float* d_load = nullptr;         // [E] dCV^2/d load
};

// d += the gradient of the weighted auxiliary losses w.r.t. one item's clean
// logits z, given its probs p, noisy probs pn, logsumexp(z) and the k-th
// noisy logit thr (chosen expert kth) that the load loss thresholds at.
VMOE_HD void add_aux_loss_grad(const AuxGradTerms& t, const float* p, const float* pn,
                               const float* z, float lse, float thr, int kth, float* d) {
  const int E = t.experts;
  const float inv_s = t.inv_items;
  if (t.dp_importance != nullptr) add_softmax_backward(E, p, t.dp_importance, d);
  if (t.dp_gshard != nullptr) add_softmax_backward(E, pn, t.dp_gshard, d);
  if (t.z != 0.0f) {
    for (int e = 0; e < E; ++e) d[e] += t.z * 2.0f * lse * inv_s * p[e];
  }
  if (t.load != 0.0f && t.sigma > 0.0f) {
    // P = Phi((logit - thr) / sigma); thr is the k-th noisy logit, whose
    // gradient goes to that expert's logit (the noise is a constant).
    float to_thr = 0.0f;
    for (int e = 0; e < E; ++e) {
      const float u = (z[e] - thr) / t.sigma;
      const float pdf = 0.39894228040143268f * exp_nonpositive(-0.5f * u * u);
      const float g = t.load * t.d_load[e] * inv_s * pdf / t.sigma;
      d[e] += g;
      to_thr -= g;
    }
    d[kth] += to_thr;
  }
}

}  // namespace vmoe
