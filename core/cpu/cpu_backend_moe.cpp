// CpuBackend: the mixture-of-experts ops (routing, dispatch, combine,
// auxiliary losses). Semantics: core/backend.h and parallel/README.md.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_loops.h"
#include "core/math.h"
#include "core/random.h"
#include "core/routing_math.h"

namespace vmoe {

void CpuBackend::add_normal_noise(int64_t n, float scale, uint64_t key, uint64_t stream,
                                  uint64_t first, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] += scale * normal_at(key, stream, first + i);
}

void CpuBackend::top_k(int64_t rows, int cols, int k, const float* x, int32_t* index,
                       float* value) {
  for (int64_t r = 0; r < rows; ++r) top_k_row(x + r * cols, cols, k, index + r * k, value + r * k);
}

void CpuBackend::assign_slots(int64_t groups, int items, int k, int experts, int capacity,
                              bool batch_priority, const int32_t* expert, const float* gate,
                              const float* item_mask, int mask_every, int32_t* slot) {
  std::vector<int> order(static_cast<size_t>(items));
  std::vector<int> count(static_cast<size_t>(experts));
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t first = g * items;
    std::iota(order.begin(), order.end(), 0);
    if (batch_priority) {
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return gate[(first + a) * k] > gate[(first + b) * k];
      });
    }
    std::fill(count.begin(), count.end(), 0);
    for (int c = 0; c < k; ++c) {
      for (int i : order) {
        const int64_t at = (first + i) * k + c;
        if (item_mask != nullptr && item_mask[(first + i) / mask_every] == 0.0f) {
          slot[at] = -1;
          continue;
        }
        const int s = count[static_cast<size_t>(expert[at])]++;
        slot[at] = s < capacity ? s : -1;
      }
    }
  }
}

void CpuBackend::moe_buffer_rows(int64_t groups, int items, int k, int /*experts*/, int capacity,
                                 int item_rows, const int32_t* expert, const int32_t* slot,
                                 int32_t* row) {
  // Expert e owns slot-rows [e, groups, capacity] (in items).
  for (int64_t i = 0; i < groups * items; ++i) {
    for (int c = 0; c < k; ++c) {
      const int s = slot[i * k + c];
      const int64_t base = (int64_t{expert[i * k + c]} * groups + i / items) * capacity;
      row[i * k + c] = s < 0 ? -1 : static_cast<int32_t>((base + s) * item_rows);
    }
  }
}

void CpuBackend::moe_dispatch(int64_t items, int k, int item_rows, int dim, const float* x,
                              const int32_t* row, float* buf) {
  const size_t bytes = static_cast<size_t>(item_rows) * dim * sizeof(float);
  for (int64_t i = 0; i < items; ++i)
    for (int c = 0; c < k; ++c)
      if (row[i * k + c] >= 0)
        std::memcpy(buf + int64_t{row[i * k + c]} * dim, x + i * item_rows * dim, bytes);
}

void CpuBackend::moe_combine(int64_t items, int k, int item_rows, int dim, const float* buf,
                             const int32_t* row, const float* gate, float* y) {
  cpu_loops::moe_combine(items, k, item_rows, dim, buf, row, gate, y);
}

void CpuBackend::moe_combine_backward(int64_t items, int k, int item_rows, int dim,
                                      const float* dy, const float* buf, const int32_t* row,
                                      const float* gate, float* dbuf, float* dgate) {
  cpu_loops::moe_combine_backward(items, k, item_rows, dim, dy, buf, row, gate, dbuf, dgate);
}

void CpuBackend::moe_dispatch_backward(int64_t items, int k, int item_rows, int dim,
                                       const float* dbuf, const int32_t* row, float* dx) {
  cpu_loops::moe_dispatch_backward(items, k, item_rows, dim, dbuf, row, dx);
}

void CpuBackend::transpose_blocks(int64_t outer, int64_t inner, int64_t block, const float* src,
                                  float* dst) {
  const size_t bytes = static_cast<size_t>(block) * sizeof(float);
  for (int64_t i = 0; i < inner; ++i)
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(dst + (i * outer + o) * block, src + (o * inner + i) * block, bytes);
}

void CpuBackend::top_k_backward(int64_t rows, int cols, int k, const int32_t* index,
                                const float* dvalue, float* d) {
  for (int64_t r = 0; r < rows; ++r)
    for (int c = 0; c < k; ++c) d[r * cols + index[r * k + c]] += dvalue[r * k + c];
}

void CpuBackend::router_aux_losses(const RouterAuxArgs& a) {
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

void CpuBackend::count_assignments(int64_t items, int k, int experts, const int32_t* expert,
                                   const int32_t* slot, const float* item_mask,
                                   int mask_every, int64_t* counts) {
  for (int64_t i = 0; i < items; ++i) {
    if (item_mask != nullptr && item_mask[i / mask_every] == 0.0f) continue;
    for (int c = 0; c < k; ++c) {
      ++counts[expert[i * k + c]];
      if (slot[i * k + c] < 0) ++counts[experts];
    }
  }
}

}  // namespace vmoe
