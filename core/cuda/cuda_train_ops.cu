// CudaBackend: the losses (softmax and sigmoid cross-entropy), the optimisers
// (Adam, SGD), and the reductions a training step keeps on the device (sum
// of squares, clipping, metric accumulators, top-1 hits). Semantics:
// core/backend.h; each kernel mirrors its loop in core/cpu/cpu_backend.cpp and
// calls the shared bodies of core/math.h. Deterministic: one block per row
// with a fixed-shape tree, sum_squares in two fixed passes (per-block double
// partials, then one block), integer atomics only. Launch helpers and
// block_reduce: cuda_launch.cuh.
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

// ---- losses (one block per row) ---------------------------------------------------------

__global__ void softmax_cross_entropy_kernel(int64_t rows, int classes, const float* logits,
                                             const int32_t* labels, const float* weight,
                                             float grad_scale, float* loss, float* dlogits) {
  __shared__ float red[32];
  VMOE_ROW_LOOP(r, rows) {
    const float* z = logits + r * classes;
    float* dz = dlogits + r * classes;
    const float w = weight[r];
    const int label = labels[r];
    const float z_label = z[label];  // read before any dz write (safe if dlogits == logits)
    float mx = -INFINITY;
    for (int c = tid(); c < classes; c += nthreads()) mx = MaxOp{}(mx, z[c]);
    mx = block_reduce(mx, MaxOp{}, red);
    float sum = 0.0f;
    for (int c = tid(); c < classes; c += nthreads()) sum += exp_fast(z[c] - mx);
    const float lse = mx + logf(block_reduce(sum, SumOp{}, red));
    if (tid() == 0) loss[r] = w * (lse - z_label);
    const float g = grad_scale * w;
    for (int c = tid(); c < classes; c += nthreads()) {
      float v = g * exp_fast(z[c] - lse);
      if (c == label) v -= g;  // the CPU's dz[label] -= g after the loop
      dz[c] = v;
    }
  }
}

__global__ void sigmoid_cross_entropy_kernel(int64_t rows, int classes, const float* logits,
                                             const float* targets, const float* weight,
                                             float grad_scale, float* loss, float* dlogits) {
  __shared__ float red[32];
  VMOE_ROW_LOOP(r, rows) {
    const float* z = logits + r * classes;
    const float* y = targets + r * classes;
    float* dz = dlogits + r * classes;
    const float w = weight[r];
    float sum = 0.0f;
    for (int c = tid(); c < classes; c += nthreads()) {
      // -y log s(z) - (1-y) log(1-s(z)) = softplus(z) - y z
      sum += softplus(z[c]) - y[c] * z[c];
      dz[c] = grad_scale * w * (sigmoid(z[c]) - y[c]);
    }
    sum = block_reduce(sum, SumOp{}, red);
    if (tid() == 0) loss[r] = w * sum;
  }
}

// ---- optimisers and sum of squares ------------------------------------------------------

// The updates also refresh the weights' bf16 copy (param16, nullable); n
// counts packs of W floats (cuda_packs.cuh).
// The step's scalars are read on the device (Backend::begin_update).
__global__ void begin_update_kernel(LrSchedule schedule, float beta1, float beta2,
                                    const float* grad_scale, int64_t* step, UpdateScalars* s) {
  *s = update_scalars(schedule.at(*step), beta1, beta2, *step + 1,
                      grad_scale != nullptr ? *grad_scale : 1.0f);
  ++*step;
}

template <int W>
__global__ void adam_kernel(int64_t n, float beta1, float beta2, float eps, float weight_decay,
                            const UpdateScalars* s, const float* grad, float* param,
                            uint16_t* param16, float* m, float* v) {
  const AdamParams a = adam_params(*s, beta1, beta2, eps, weight_decay);
  VMOE_GRID_LOOP(i, n) {
    const Pack<W> g = load<W>(grad, i);
    Pack<W> p = load<W>(param, i), mi = load<W>(m, i), vi = load<W>(v, i);
    for (int l = 0; l < W; ++l) vmoe::adam_update(a, g.v[l], p.v[l], mi.v[l], vi.v[l]);
    store<W>(param, i, p);
    store_bf16<W>(param16, i, p);
    store<W>(m, i, mi);
    store<W>(v, i, vi);
  }
}

template <int W>
__global__ void sgd_kernel(int64_t n, float momentum, float weight_decay, const UpdateScalars* u,
                           const float* grad, float* param, uint16_t* param16, float* buf) {
  const SgdParams s{u->lr, momentum, weight_decay, u->grad_scale};
  VMOE_GRID_LOOP(i, n) {
    const Pack<W> g = load<W>(grad, i);
    Pack<W> p = load<W>(param, i), b = load<W>(buf, i);
    for (int l = 0; l < W; ++l) vmoe::sgd_update(s, g.v[l], p.v[l], b.v[l]);
    store<W>(param, i, p);
    store_bf16<W>(param16, i, p);
    store<W>(buf, i, b);
  }
}

// partial[block] = sum of x^2 (double) over the block's grid-stride elements.
__global__ void sum_squares_partial_kernel(int64_t n, const float* x, double* partial) {
  __shared__ double red[32];
  double s = 0.0;
  VMOE_GRID_LOOP(i, n) s += static_cast<double>(x[i]) * x[i];
  s = block_reduce(s, SumOp{}, red);
  if (tid() == 0) partial[blockIdx.x] = s;
}

// *out = sum of partial[0, count) (one block).
__global__ void sum_partials_kernel(int count, const double* partial, double* out) {
  __shared__ double red[32];
  double s = 0.0;
  for (int i = tid(); i < count; i += nthreads()) s += partial[i];
  s = block_reduce(s, SumOp{}, red);
  if (tid() == 0) *out = s;
}

__global__ void clip_scale_kernel(const double* sq, double expert_divisor, float max_norm,
                                  double* norm, float* scale) {
  double n = 0.0;
  *scale = clip_factor(sq[0], sq[1], expert_divisor, max_norm, n);
  *norm = n;
}

// Block per column: acc[c] += scale * sum over rows (double, fixed-shape tree).
__global__ void accumulate_columns_kernel(int64_t rows, int cols, const float* x, double scale,
                                          double* acc) {
  __shared__ double red[32];
  for (int c = blockIdx.x; c < cols; c += gridDim.x) {
    double s = 0.0;
    for (int64_t r = tid(); r < rows; r += nthreads()) s += x[r * cols + c];
    s = block_reduce(s, SumOp{}, red);
    if (tid() == 0) acc[c] += scale * s;
  }
}

// Thread per row: argmax (ties: the lower index) against the label; integer
// atomics, so the count does not depend on the order.
__global__ void count_top1_hits_kernel(int64_t rows, int cols, const float* x,
                                       const int32_t* label, const float* mask,
                                       unsigned long long* hits) {
  VMOE_GRID_LOOP(r, rows) {
    if (mask != nullptr && mask[r] == 0.0f) continue;
    const float* z = x + r * cols;
    int best = 0;
    for (int c = 1; c < cols; ++c) best = z[c] > z[best] ? c : best;
    if (best == label[r]) atomicAdd(hits, 1ull);
  }
}

}  // namespace

// ---- losses ---------------------------------------------------------------------------

// loss[r] = w[r] (lse(z_r) - z_r[label]); dlogits[r] = grad_scale w[r] (softmax - onehot).
void CudaBackend::softmax_cross_entropy(int64_t rows, int classes, const float* logits,
                                        const int32_t* labels, const float* weight,
                                        float grad_scale, float* loss, float* dlogits) {
  if (rows <= 0) return;
  softmax_cross_entropy_kernel<<<grid_rows(rows), row_threads(classes), 0, stream_>>>(
      rows, classes, logits, labels, weight, grad_scale, loss, dlogits);
  VMOE_CUDA_LAUNCH_CHECK();
}

// loss[r] = w[r] sum_c (softplus(z) - y z); dlogits = grad_scale w[r] (sigmoid(z) - y).
void CudaBackend::sigmoid_cross_entropy(int64_t rows, int classes, const float* logits,
                                        const float* targets, const float* weight, float grad_scale,
                                        float* loss, float* dlogits) {
  if (rows <= 0) return;
  sigmoid_cross_entropy_kernel<<<grid_rows(rows), row_threads(classes), 0, stream_>>>(
      rows, classes, logits, targets, weight, grad_scale, loss, dlogits);
  VMOE_CUDA_LAUNCH_CHECK();
}

// ---- optimisers and reductions ----------------------------------------------------------

// One thread: the rate and Adam's bias corrections in double, as the CPU.
void CudaBackend::begin_update(const LrSchedule& schedule, float beta1, float beta2,
                               const float* grad_scale, int64_t* step, UpdateScalars* s) {
  begin_update_kernel<<<1, 1, 0, stream_>>>(schedule, beta1, beta2, grad_scale, step, s);
  VMOE_CUDA_LAUNCH_CHECK();
}

// Adam with decoupled weight decay.
void CudaBackend::adam_update(int64_t n, float beta1, float beta2, float eps, float weight_decay,
                              const UpdateScalars* s, const float* grad, float* param,
                              uint16_t* param16, float* m, float* v) {
  if (n <= 0) return;
  VMOE_LAUNCH_PACKED(adam_kernel, pack_width(n, {grad, param, m, v}, {param16}), n, beta1, beta2,
                     eps, weight_decay, s, grad, param, param16, m, v);
  VMOE_CUDA_LAUNCH_CHECK();
}

// SGD with heavy-ball momentum and decoupled weight decay.
void CudaBackend::sgd_update(int64_t n, float momentum, float weight_decay, const UpdateScalars* s,
                             const float* grad, float* param, uint16_t* param16, float* buf) {
  if (n <= 0) return;
  VMOE_LAUNCH_PACKED(sgd_kernel, pack_width(n, {grad, param, buf}, {param16}), n, momentum,
                     weight_decay, s, grad, param, param16, buf);
  VMOE_CUDA_LAUNCH_CHECK();
}

// sum x^2 in double: per-block partials, then one block summing them into *out.
void CudaBackend::sum_squares(int64_t n, const float* x, double* out) {
  const int blocks =
      static_cast<int>(std::clamp<int64_t>((n + kThreads * 16 - 1) / (kThreads * 16), 1, 1024));
  auto* partial = static_cast<double*>(scratch(sizeof(double) * blocks));
  sum_squares_partial_kernel<<<blocks, kThreads, 0, stream_>>>(std::max<int64_t>(n, 0), x,
                                                               partial);
  VMOE_CUDA_LAUNCH_CHECK();
  sum_partials_kernel<<<1, kThreads, 0, stream_>>>(blocks, partial, out);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::clip_scale(const double* sq, double expert_divisor, float max_norm, double* norm,
                             float* scale) {
  clip_scale_kernel<<<1, 1, 0, stream_>>>(sq, expert_divisor, max_norm, norm, scale);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::accumulate_columns(int64_t rows, int cols, const float* x, double scale,
                                     double* acc) {
  if (cols <= 0) return;
  accumulate_columns_kernel<<<grid_cap(cols, 65535), row_threads(rows), 0, stream_>>>(
      std::max<int64_t>(rows, 0), cols, x, scale, acc);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::count_top1_hits(int64_t rows, int cols, const float* x, const int32_t* label,
                                  const float* mask, int64_t* hits) {
  static_assert(sizeof(int64_t) == sizeof(unsigned long long));
  if (rows <= 0 || cols <= 0) return;
  count_top1_hits_kernel<<<grid_for(rows), kThreads, 0, stream_>>>(
      rows, cols, x, label, mask, reinterpret_cast<unsigned long long*>(hits));
  VMOE_CUDA_LAUNCH_CHECK();
}

}  // namespace vmoe
