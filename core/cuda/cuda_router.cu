// CudaBackend: the routing ops of mixture-of-experts layers (router noise,
// top-k, batch-priority slot assignment, auxiliary losses, assignment
// counts). Semantics: core/backend.h, parallel/README.md; every decision
// (top-k ties, the stable batch-priority order, slots, drops) is the one
// core/cpu_backend_moe.cpp makes. Deterministic: integer atomics only, and
// the per-expert sums of the auxiliary losses run in the CPU's order.
#include <algorithm>
#include <cstdint>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_launch.cuh"
#include "core/math.h"
#include "core/routing_math.h"
#include "core/random.h"

namespace vmoe {
namespace {

constexpr size_t kSharedBytes = 48 * 1024;  // dynamic shared memory without opt-in

__global__ void noise_kernel(int64_t n, float scale, uint64_t key, uint64_t stream, uint64_t first,
                             const int64_t* step, uint64_t per_step, float* x) {
  first = first_counter(first, step, per_step);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    x[i] += scale * normal_at(key, stream, first + static_cast<uint64_t>(i));
}

// One thread per row, the CPU's selection loop (strict >: lower index wins ties).
__global__ void top_k_kernel(int64_t rows, int cols, int k, const float* x, int32_t* index,
                             float* value) {
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < rows;
       r += int64_t{gridDim.x} * blockDim.x) {
    top_k_row(x + r * cols, cols, k, index + r * k, value + r * k);
  }
}

__global__ void top_k_backward_kernel(int64_t rows, int cols, int k, const int32_t* index,
                                      const float* dvalue, float* d) {
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < rows;
       r += int64_t{gridDim.x} * blockDim.x)
    for (int c = 0; c < k; ++c) d[r * cols + index[r * k + c]] += dvalue[r * k + c];
}

// Unsigned key ordered like the float (>, ==); -0 and +0 share a key, and
// every NaN gets one key (the CPU's stable_sort order is undefined for NaN).
__device__ uint32_t order_key(float g) {
  uint32_t b = __float_as_uint(g);
  if (g == 0.0f) b = 0u;
  if (g != g) b = 0x7fc00000u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// One warp's walk over its part [begin, end) of the group's k-major choice
// sequence (q = c * items + position): choices of one expert get consecutive
// counts in sequence order. h[e] is the warp's running count of expert e.
// kAssign = false only counts; kAssign = true also writes the slots.
template <bool kAssign>
__device__ void walk_choices(int64_t begin, int64_t end, int64_t first, int items, int k,
                             int capacity, bool bpr, const uint64_t* keys,
                             const int32_t* expert, const float* item_mask, int mask_every,
                             int* h, int32_t* slot) {
  const int lane = threadIdx.x & 31;
  for (int64_t q0 = begin; q0 < end; q0 += 32) {  // uniform over the warp
    const int64_t q = q0 + lane;
    int e = -2;  // -2: no choice; -1: masked item
    int64_t at = 0;
    if (q < end) {
      const int c = static_cast<int>(q / items), pos = static_cast<int>(q - int64_t{c} * items);
      const int i = bpr ? static_cast<int>(static_cast<uint32_t>(keys[pos])) : pos;
      at = (first + i) * k + c;
      const bool masked = item_mask != nullptr && item_mask[(first + i) / mask_every] == 0.0f;
      e = masked ? -1 : expert[at];
    }
    const unsigned peers = __match_any_sync(kFull, e);
    const int base = e >= 0 ? h[e] : 0;
    if (kAssign && q < end) {
      const int s = base + __popc(peers & ((1u << lane) - 1u));
      slot[at] = e < 0 ? -1 : (s < capacity ? s : -1);
    }
    __syncwarp();
    if (e >= 0 && lane == __ffs(peers) - 1) h[e] = base + __popc(peers);
    __syncwarp();
  }
}

// One block per group (looping when groups > grid). Batch priority: a bitonic
// sort of (~key(top-1 gate), item) ascending = gate descending, ties by item
// index (a stable sort), in shared memory or in this block's global `gkeys`
// [P]. Slots: each warp counts its segment of the k-major sequence per
// expert (hist [warps, E] in global scratch), an exclusive scan over the
// warps per expert gives each warp's starting counts, then the warps assign.
__global__ void assign_slots_kernel(int64_t groups, int items, int k, int experts, int capacity,
                                    bool bpr, int P, bool shared_keys, const int32_t* expert,
                                    const float* gate, const float* item_mask, int mask_every,
                                    int32_t* slot, uint64_t* gkeys, int* ghist) {
  extern __shared__ uint64_t slot_keys[];
  uint64_t* keys = shared_keys ? slot_keys : gkeys + int64_t{blockIdx.x} * P;
  const int warps = static_cast<int>(blockDim.x >> 5), warp = static_cast<int>(threadIdx.x >> 5);
  int* hist = ghist + int64_t{blockIdx.x} * warps * experts;
  const int64_t L = int64_t{k} * items, seg = (L + warps - 1) / warps;
  const int64_t begin = min64(L, warp * seg), end = min64(L, begin + seg);
  for (int64_t g = blockIdx.x; g < groups; g += gridDim.x) {
    const int64_t first = g * items;
    if (bpr) {
      for (int p = threadIdx.x; p < P; p += blockDim.x)
        keys[p] = p < items ? (uint64_t{~order_key(gate[(first + p) * k])} << 32) | uint32_t(p)
                            : ~uint64_t{0};
      __syncthreads();
      for (int size = 2; size <= P; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
          for (int t = threadIdx.x; t < P / 2; t += blockDim.x) {
            const int i = 2 * t - (t & (stride - 1)), j = i + stride;
            const uint64_t a = keys[i], b = keys[j];
            if ((a > b) == ((i & size) == 0)) {
              keys[i] = b;
              keys[j] = a;
            }
          }
          __syncthreads();
        }
      }
    }
    for (int t = threadIdx.x; t < warps * experts; t += blockDim.x) hist[t] = 0;
    __syncthreads();
    walk_choices<false>(begin, end, first, items, k, capacity, bpr, keys, expert, item_mask,
                        mask_every, hist + warp * experts, slot);
    __syncthreads();
    for (int e = threadIdx.x; e < experts; e += blockDim.x) {
      int run = 0;
      for (int w = 0; w < warps; ++w) {
        const int n = hist[w * experts + e];
        hist[w * experts + e] = run;
        run += n;
      }
    }
    __syncthreads();
    walk_choices<true>(begin, end, first, items, k, capacity, bpr, keys, expert, item_mask,
                       mask_every, hist + warp * experts, slot);
    __syncthreads();  // keys and hist are reused by the next group
  }
}

// Block per group (looping), items in chunks of `chunk`. Per chunk, items in
// parallel (thread per item): lse (z-loss) and thr (the k-th noisy logit,
// load loss) to scratch, and every term the sums add into shared memory, each
// rounded as the CPU rounds it (no fused multiply-add). Then one task per
// expert adds its chunk's terms in item order, the CPU's order (task E: the
// z-loss): the serial part is only adds from shared memory. Thread 0 forms
// the losses and stats[g] = {weighted d_importance, d_load, weighted GShard
// term} [3, E] (see AuxGradTerms).
__global__ void aux_group_kernel(RouterAuxArgs a, int chunk, float* lse, float* thr, float* stats) {
  // Shared: sums [4, E] (importance, load, frac, prob), then per chunk the
  // terms [chunk, E] of probs, load and prob, top-1 [chunk], z terms [chunk].
  extern __shared__ float aux_shared[];
  __shared__ float z_loss;
  const int E = a.experts, S = a.items, k = a.k;
  const float inv_s = 1.0f / static_cast<float>(S);
  float *importance = aux_shared, *load = aux_shared + E, *frac = aux_shared + 2 * E;
  float* prob = aux_shared + 3 * E;
  float* t_probs = aux_shared + 4 * E;
  float* t_load = t_probs + chunk * E;
  float* t_prob = t_load + chunk * E;
  float* t_z = t_prob + chunk * E;
  int* t_top = reinterpret_cast<int*>(t_z + chunk);
  for (int64_t g = blockIdx.x; g < a.groups; g += gridDim.x) {
    const int64_t first = g * S;
    float acc = 0.0f, ld = 0.0f, fr = 0.0f, pr = 0.0f;  // task e's running sums
    for (int s0 = 0; s0 < S; s0 += chunk) {
      const int n = min(chunk, S - s0);
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t r = first + s0 + i;
        const float* z = a.logits + r * E;
        const float l = logsumexp_row(z, E);
        lse[r] = l;
        t_z[i] = __fmul_rn(__fmul_rn(l, l), inv_s);
        t_top[i] = a.top_index[r * k];
        const float th = a.sigma > 0.0f ? a.noisy_logits[r * E + a.top_index[r * k + k - 1]] : 0.0f;
        if (a.sigma > 0.0f) thr[r] = th;
        for (int e = 0; e < E; ++e) {
          t_probs[i * E + e] = a.probs[r * E + e];
          t_prob[i * E + e] = __fmul_rn(a.noisy_probs[r * E + e], inv_s);
          t_load[i * E + e] =
              a.sigma > 0.0f ? __fmul_rn(normal_cdf(__fdiv_rn(z[e] - th, a.sigma)), inv_s) : 0.0f;
        }
      }
      __syncthreads();
      const int e = threadIdx.x;
      if (e < E) {
        for (int i = 0; i < n; ++i) {
          acc += t_probs[i * E + e];
          pr += t_prob[i * E + e];
          if (t_top[i] == e) fr += inv_s;
          if (a.sigma > 0.0f) ld += t_load[i * E + e];
        }
      } else if (e == E) {
        for (int i = 0; i < n; ++i) acc += t_z[i];
      }
      __syncthreads();  // the chunk's terms are reused by the next chunk
    }
    if (threadIdx.x < E) {
      importance[threadIdx.x] = acc;
      load[threadIdx.x] = ld;
      frac[threadIdx.x] = fr;
      prob[threadIdx.x] = pr;
    }
    if (threadIdx.x == E) z_loss = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      float* st = stats + g * 3 * E;
      float* losses = a.group_losses + g * 4;
      losses[0] = cv_squared(importance, E, st);
      losses[1] = a.sigma > 0.0f ? cv_squared(load, E, st + E) : 0.0f;
      float gshard = 0.0f;
      for (int i = 0; i < E; ++i) gshard += __fmul_rn(frac[i], prob[i]);
      losses[2] = static_cast<float>(E) * gshard;
      losses[3] = z_loss;
      // Weighted once per group, the vectors the gradient's softmax terms need.
      const float wi = a.importance_weight * a.grad_scale, wg = a.gshard_weight * a.grad_scale;
      for (int i = 0; i < E; ++i) {
        st[i] = wi * st[i];
        st[2 * E + i] = wg * static_cast<float>(E) * frac[i] * inv_s;
      }
    }
    __syncthreads();  // shared arrays are reused by the next group
  }
}

// Thread per item row: the CPU's gradient (add_aux_loss_grad).
__global__ void aux_backward_kernel(RouterAuxArgs a, const float* lse, const float* thr,
                                    const float* stats) {
  const int E = a.experts, S = a.items;
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < a.groups * S;
       r += int64_t{gridDim.x} * blockDim.x) {
    const float* st = stats + r / S * 3 * E;
    const AuxGradTerms terms{
        .experts = E,
        .inv_items = 1.0f / static_cast<float>(S),
        .sigma = a.sigma,
        .load = a.load_weight * a.grad_scale,
        .z = a.z_weight * a.grad_scale,
        .dp_importance = a.importance_weight * a.grad_scale != 0.0f ? st : nullptr,
        .dp_gshard = a.gshard_weight * a.grad_scale != 0.0f ? st + 2 * E : nullptr,
        .d_load = st + E};
    add_aux_loss_grad(terms, a.probs + r * E, a.noisy_probs + r * E, a.logits + r * E, lse[r],
                      a.sigma > 0.0f ? thr[r] : 0.0f, a.top_index[r * a.k + a.k - 1],
                      a.d_logits + r * E);
  }
}

__global__ void count_assignments_kernel(int64_t items, int k, int experts,
                                         const int32_t* expert, const int32_t* slot,
                                         const float* item_mask, int mask_every,
                                         unsigned long long* counts) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < items;
       i += int64_t{gridDim.x} * blockDim.x) {
    if (item_mask != nullptr && item_mask[i / mask_every] == 0.0f) continue;
    for (int c = 0; c < k; ++c) {
      atomicAdd(&counts[expert[i * k + c]], 1ull);
      if (slot[i * k + c] < 0) atomicAdd(&counts[experts], 1ull);
    }
  }
}

}  // namespace

void CudaBackend::add_normal_noise(int64_t n, float scale, uint64_t key, uint64_t stream,
                                   uint64_t first, const int64_t* step, uint64_t per_step,
                                   float* x) {
  if (n <= 0) return;
  noise_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, scale, key, stream, first, step, per_step,
                                                      x);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::top_k(int64_t rows, int cols, int k, const float* x, int32_t* index,
                        float* value) {
  if (rows <= 0 || k <= 0) return;
  VMOE_CHECK(k <= cols, "top_k: k = ", k, " exceeds the ", cols, " columns");
  top_k_kernel<<<grid_for(rows, 128), 128, 0, stream_>>>(rows, cols, k, x, index, value);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::assign_slots(int64_t groups, int items, int k, int experts, int capacity,
                               bool batch_priority, const int32_t* expert, const float* gate,
                               const float* item_mask, int mask_every, int32_t* slot) {
  if (groups <= 0 || items <= 0 || k <= 0) return;
  // P <= 2^29 keeps the bitonic sort's `size <<= 1` (int) from overflowing.
  VMOE_CHECK(items <= (1 << 29), "assign_slots: ", items, " items per group (at most 2^29)");
  constexpr int kSlotThreads = 512, kWarps = kSlotThreads / 32;
  int64_t P = 1;
  while (P < items) P <<= 1;
  const bool shared_keys = batch_priority && P * sizeof(uint64_t) <= kSharedBytes;
  const unsigned grid = grid_cap(groups, 512);
  // Per block: hist [warps, E] int32, then (if not in shared memory) keys [P] uint64.
  const size_t hist_bytes = (size_t{kWarps} * experts * sizeof(int) + 7) / 8 * 8;
  const size_t key_bytes = batch_priority && !shared_keys ? P * sizeof(uint64_t) : 0;
  char* s = static_cast<char*>(scratch(grid * (hist_bytes + key_bytes)));
  int* hist = reinterpret_cast<int*>(s);
  uint64_t* keys = reinterpret_cast<uint64_t*>(s + grid * hist_bytes);
  assign_slots_kernel<<<grid, kSlotThreads, shared_keys ? P * sizeof(uint64_t) : 0, stream_>>>(
      groups, items, k, experts, capacity, batch_priority, static_cast<int>(P), shared_keys,
      expert, gate, item_mask, mask_every, slot, keys, hist);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::top_k_backward(int64_t rows, int cols, int k, const int32_t* index,
                                 const float* dvalue, float* d) {
  if (rows <= 0 || k <= 0) return;
  top_k_backward_kernel<<<grid_for(rows), kThreads, 0, stream_>>>(rows, cols, k, index, dvalue,
                                                                   d);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::router_aux_losses(const RouterAuxArgs& a) {
  if (a.groups <= 0) return;
  const int E = a.experts;
  // Dynamic shared memory: 4 E sums, then chunk items of 3 E + 2 terms; the
  // kernel's static z_loss shares the 48 KiB. Thread E sums the z-loss.
  const int64_t free_floats = int64_t(kSharedBytes / sizeof(float)) - 1 - 4 * int64_t{E};
  const int chunk = static_cast<int>(std::min<int64_t>(kThreads, free_floats / (3 * E + 2)));
  VMOE_CHECK(E > 0 && E < kThreads && chunk >= 1, "router_aux_losses: ", E,
             " experts (the CUDA backend supports up to ", kThreads - 1, ")");
  const size_t shared = (4 * size_t(E) + size_t(chunk) * (3 * E + 2)) * sizeof(float);
  const int64_t n = a.groups * a.items;
  // Scratch: lse [n], thr [n], stats [groups, 3, E].
  float* lse = static_cast<float*>(scratch((2 * n + a.groups * 3 * E) * sizeof(float)));
  float* thr = lse + n;
  float* stats = thr + n;
  aux_group_kernel<<<grid_cap(a.groups, 65535), kThreads, shared, stream_>>>(a, chunk, lse, thr,
                                                                             stats);
  VMOE_CUDA_LAUNCH_CHECK();
  if (n > 0) {
    aux_backward_kernel<<<grid_for(n, 128), 128, 0, stream_>>>(a, lse, thr, stats);
    VMOE_CUDA_LAUNCH_CHECK();
  }
}

void CudaBackend::count_assignments(int64_t items, int k, int experts, const int32_t* expert,
                                    const int32_t* slot, const float* item_mask, int mask_every,
                                    int64_t* counts) {
  static_assert(sizeof(int64_t) == sizeof(unsigned long long));
  if (items <= 0 || k <= 0) return;
  count_assignments_kernel<<<grid_for(items), kThreads, 0, stream_>>>(
      items, k, experts, expert, slot, item_mask, mask_every,
      reinterpret_cast<unsigned long long*>(counts));
  VMOE_CUDA_LAUNCH_CHECK();
}

}  // namespace vmoe
