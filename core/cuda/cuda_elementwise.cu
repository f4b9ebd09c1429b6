// CudaBackend: the element-wise ops (fill, scale, axpy, biases and their
// gradients, bias + GELU and its backward, the experts' biases, tanh).
// Semantics: core/backend.h; each kernel mirrors its CPU loop (core/cpu/) with
// the shared bodies of core/math.h. The element-wise kernels move 4 floats
// per load and store where they can (cuda_packs.cuh).
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

// ---- element-wise ---------------------------------------------------------------------

// Element-wise kernels run over packs of W floats (cuda_packs.cuh): n is a
// count of packs, and a row's bias packs are cols / W.

// The bias kernels run over [experts, rows, row_packs] (an expert's bias row
// over its rows; one expert for dense layers) on a grid (packs of a row, rows,
// expert), see bias_grid: a thread loads its bias pack once and strides over
// the rows, with no division per element. (Finding the row and bias of a
// flat index took two 64-bit divisions per pack: on an H200, B/16's expert
// bias + GELU took 607 us a call that way, 526 us this way; what is left is
// the exact GELU's arithmetic.)
#define VMOE_BIAS_ROWS_LOOP(i, b, bias, rows, row_packs)                                    \
  const int64_t b##_p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;                     \
  if (b##_p >= (row_packs)) return;                                                         \
  const Pack<W> b = load<W>(bias, blockIdx.z * int64_t{row_packs} + b##_p);                 \
  for (int64_t b##_r = blockIdx.y, i = (blockIdx.z * (rows) + b##_r) * (row_packs) + b##_p; \
       b##_r < (rows); b##_r += gridDim.y, i += int64_t{gridDim.y} * (row_packs))
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
__global__ void add_bias_kernel(int64_t rows, int row_packs, const float* bias, float* y,
                                uint16_t* y16) {
  VMOE_BIAS_ROWS_LOOP(i, b, bias, rows, row_packs) {
    Pack<W> v = load<W>(y, i);
    for (int l = 0; l < W; ++l) v.v[l] += b.v[l];
    store<W>(y, i, v);
    store_bf16<W>(y16, i, v);
  }
}
template <int W>
__global__ void bias_gelu_kernel(int64_t rows, int row_packs, const float* bias, float* a,
                                 const uint16_t* a16, float* g, uint16_t* g16, uint16_t* slope16) {
  VMOE_BIAS_ROWS_LOOP(i, b, bias, rows, row_packs) {
    Pack<W> v = a16 != nullptr ? load_bf16<W>(a16, i) : load<W>(a, i), out;
    for (int l = 0; l < W; ++l) gelu_and_grad(v.v[l] + b.v[l], out.v[l], v.v[l]);
    if (slope16 != nullptr)
      store_bf16<W>(slope16, i, v);  // a only read
    else
      store<W>(a, i, v);
    store<W>(g, g16, i, out);  // g null: bf16 only
  }
}
// da = dg * a with the bias gradient's first pass in the same sweep. Block
// (kGeluCols, kGeluLanes): thread x owns W consecutive columns of expert
// blockIdx.z, lane y the rows begin + y, begin + y + kGeluLanes, ... of chunk
// blockIdx.y; partial[chunk, e cols + c] = the chunk's column sums, lanes
// added in order (deterministic). cols divides by W.
constexpr int kGeluCols = 64, kGeluLanes = 4;
template <int W>
__global__ void gelu_backward_kernel(int64_t rows, int cols, int64_t chunk_rows, const float* a,
                                     const uint16_t* slope16, const float* dg, const uint16_t* dg16,
                                     float* da, uint16_t* da16, float* partial) {
  __shared__ float tile[kGeluLanes][kGeluCols * W];
  const int64_t e = blockIdx.z;
  const int64_t c = (int64_t{blockIdx.x} * kGeluCols + threadIdx.x) * W;
  const int64_t begin = blockIdx.y * chunk_rows;
  const int64_t end = min64(begin + chunk_rows, rows);
  Pack<W> s;
  for (int l = 0; l < W; ++l) s.v[l] = 0.0f;
  if (c < cols) {
#pragma unroll 4
    for (int64_t r = begin + threadIdx.y; r < end; r += kGeluLanes) {
      const int64_t i = ((e * rows + r) * cols + c) / W;
      const Pack<W> d = slope16 != nullptr ? load_bf16<W>(slope16, i) : load<W>(a, i);
      Pack<W> v = dg16 != nullptr ? load_bf16<W>(dg16, i) : load<W>(dg, i);  // may be da16's
      for (int l = 0; l < W; ++l) {
        v.v[l] *= d.v[l];
        s.v[l] += v.v[l];
      }
      store<W>(da, da16, i, v);  // da null: the bf16 copy alone
    }
  }
  if (partial == nullptr) return;
  for (int l = 0; l < W; ++l) tile[threadIdx.y][threadIdx.x * W + l] = s.v[l];
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
  const int64_t columns = gridDim.z * int64_t{cols};
  for (int l = 0; l < W; ++l) {
    float t = s.v[l];
    for (int y = 1; y < kGeluLanes; ++y) t += tile[y][threadIdx.x * W + l];
    partial[blockIdx.y * columns + e * cols + c + l] = t;
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
// The dense bias ops are the experts' with one expert (one bias row for all
// rows).
void CudaBackend::add_bias(int64_t rows, int cols, const float* bias, float* y, uint16_t* y16) {
  add_bias_per_expert(1, rows, cols, bias, y, y16);
}

// dbias += sum_r dy[r, :]
void CudaBackend::bias_grad(int64_t rows, int cols, const float* dy, float* dbias) {
  expert_bias_grad(1, rows, cols, dy, dbias);
}

void CudaBackend::expert_add_bias(int experts, int64_t rows, int cols, const float* bias,
                                  float* y) {
  add_bias_per_expert(experts, rows, cols, bias, y, nullptr);
}

namespace {
// The launch shape of the VMOE_BIAS_ROWS_LOOP kernels for packs of `width`.
struct BiasGrid {
  dim3 grid, block;
  int row_packs;
};
BiasGrid bias_grid(int experts, int64_t rows, int cols, int width) {
  VMOE_CHECK(experts <= 65535, "bias ops: ", experts, " experts is beyond one grid");
  const int row_packs = cols / width, threads = row_threads(row_packs);
  return {
      dim3(static_cast<unsigned>((row_packs + threads - 1) / threads),
           static_cast<unsigned>(std::min<int64_t>(rows, 65535)), static_cast<unsigned>(experts)),
      dim3(static_cast<unsigned>(threads)), row_packs};
}
}  // namespace

// Calls kernel<4> or kernel<1> (by `width`) on bias_grid's shape with
// (rows, row_packs, ...).
#define VMOE_LAUNCH_BIAS_ROWS(kernel, width, experts, rows, cols, ...)            \
  do {                                                                            \
    const BiasGrid s = bias_grid(experts, rows, cols, width);                     \
    if ((width) == 4) {                                                           \
      kernel<4><<<s.grid, s.block, 0, stream_>>>(rows, s.row_packs, __VA_ARGS__); \
    } else {                                                                      \
      kernel<1><<<s.grid, s.block, 0, stream_>>>(rows, s.row_packs, __VA_ARGS__); \
    }                                                                             \
  } while (0)

void CudaBackend::add_bias_per_expert(int experts, int64_t rows, int cols, const float* bias,
                                      float* y, uint16_t* y16) {
  const int64_t n = experts * rows * cols;
  if (n <= 0) return;
  const int width = cols % 4 == 0 ? pack_width(n, {bias, y}, {y16}) : 1;
  VMOE_LAUNCH_BIAS_ROWS(add_bias_kernel, width, experts, rows, cols, bias, y, y16);
  VMOE_CUDA_LAUNCH_CHECK();
}

// g = gelu(a + bias), a read from a16 where given; the slope gelu'(a + bias)
// over a or into slope16.
void CudaBackend::expert_bias_gelu(int experts, int64_t rows, int cols, const float* bias, float* a,
                                   const uint16_t* a16, float* g, uint16_t* g16,
                                   uint16_t* slope16) {
  const int64_t n = experts * rows * cols;
  if (n <= 0) return;
  const int width = cols % 4 == 0 ? pack_width(n, {bias, a, g}, {a16, g16, slope16}) : 1;
  VMOE_LAUNCH_BIAS_ROWS(bias_gelu_kernel, width, experts, rows, cols, bias, a, a16, g, g16,
                        slope16);
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

// da = dg * s, s = bias_gelu's slope (slope16, else a), dg read from dg16
// where given (it may be da16: each thread reads a value before writing it),
// and dbias += its
// column sums per expert: pass 1 of the column sums is fused into the
// element-wise sweep, so da is read once (and, under bf16, written only as
// its bf16 copy); pass 2 is finish_column_sums.
void CudaBackend::gelu_backward(int experts, int64_t rows, int cols, const float* a,
                                const uint16_t* slope16, const float* dg, const uint16_t* dg16,
                                float* da, uint16_t* da16, float* dbias) {
  if (experts <= 0 || rows <= 0 || cols <= 0) return;
  const ColPlan plan = col_plan(rows);
  const int64_t columns = int64_t{experts} * cols;
  auto* partial = dbias != nullptr
                      ? static_cast<float*>(scratch(sizeof(float) * plan.chunks * columns))
                      : nullptr;
  const int width =
      cols % 4 == 0 ? pack_width(columns * rows, {a, dg, da}, {da16, slope16, dg16}) : 1;
  const dim3 block(kGeluCols, kGeluLanes);
  const auto grid = [&](int w) {
    return dim3(static_cast<unsigned>((cols + kGeluCols * w - 1) / (kGeluCols * w)),
                static_cast<unsigned>(plan.chunks), static_cast<unsigned>(experts));
  };
  if (width == 4) {
    gelu_backward_kernel<4><<<grid(4), block, 0, stream_>>>(rows, cols, plan.chunk_rows, a, slope16,
                                                            dg, dg16, da, da16, partial);
  } else {
    gelu_backward_kernel<1><<<grid(1), block, 0, stream_>>>(rows, cols, plan.chunk_rows, a, slope16,
                                                            dg, dg16, da, da16, partial);
  }
  VMOE_CUDA_LAUNCH_CHECK();
  if (dbias != nullptr) finish_column_sums(stream_, partial, plan.chunks, columns, AddTo{dbias});
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

}  // namespace vmoe
