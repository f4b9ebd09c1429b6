// CudaBackend: expert buffers and the data movement of mixture-of-experts
// layers (buffer rows, dispatch, combine, their backwards, block transposes).
// Semantics: core/backend.h, parallel/README.md; the same decisions and
// layouts as core/cpu/cpu_backend_moe.cpp. Deterministic: each output row
// written by one thread block, fixed-shape reductions. The
// routing ops (noise, top-k, slots, auxiliary losses, counts) are in
// cuda_router.cu.
#include <algorithm>
#include <cstdint>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_launch.cuh"

namespace vmoe {
namespace {

// Sum over the block (blockDim a multiple of 32), valid in thread 0. Fixed
// shape, so deterministic. Every thread of the block must call it.
__device__ float block_sum(float v, float* red /* shared [32] */) {
  __syncthreads();  // a previous call's readers are done with red
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFull, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = 0.0f;
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFull, v, o);
  }
  return v;
}

// Expert e owns slot-rows [e, groups, capacity] (in items): a kept choice's row.
__global__ void buffer_rows_kernel(int64_t n, int items, int k, int64_t groups, int capacity,
                                   int item_rows, const int32_t* expert, const int32_t* slot,
                                   int32_t* row) {
  VMOE_GRID_LOOP(t, n) {
    const int s = slot[t];
    const int64_t base = (int64_t{expert[t]} * groups + t / k / items) * capacity;
    row[t] = s < 0 ? -1 : static_cast<int32_t>((base + s) * item_rows);
  }
}

// Block per (item, choice): buf rows of a kept choice = the item's rows.
__global__ void dispatch_kernel(int64_t pairs, int k, int64_t n, int dim, const float* x,
                                const int32_t* row, float* buf) {
  for (int64_t p = blockIdx.x; p < pairs; p += gridDim.x) {
    const int r = row[p];
    if (r < 0) continue;
    const float* src = x + p / k * n;
    float* dst = buf + int64_t{r} * dim;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) dst[j] = src[j];
  }
}

// Block per item: y = sum over kept choices c = 0..k-1 (in order) of gate * buf.
__global__ void combine_kernel(int64_t items, int k, int64_t n, int dim, const float* buf,
                               const int32_t* row, const float* gate, float* y) {
  for (int64_t i = blockIdx.x; i < items; i += gridDim.x) {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      float acc = 0.0f;
      for (int c = 0; c < k; ++c) {
        const int r = row[i * k + c];
        if (r >= 0) acc = fmaf(gate[i * k + c], buf[int64_t{r} * dim + j], acc);
      }
      y[i * n + j] = acc;
    }
  }
}

// Block per (item, choice): dbuf rows = gate * dy; dgate += <dy, buf rows>.
__global__ void combine_backward_kernel(int64_t pairs, int k, int64_t n, int dim,
                                        const float* dy, const float* buf, const int32_t* row,
                                        const float* gate, float* dbuf, float* dgate) {
  __shared__ float red[32];
  for (int64_t p = blockIdx.x; p < pairs; p += gridDim.x) {
    const int r = row[p];
    if (r < 0) continue;  // uniform over the block
    const float* d = dy + p / k * n;
    const float* out = buf + int64_t{r} * dim;
    float* dout = dbuf + int64_t{r} * dim;
    const float w = gate[p];
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      dout[j] = w * d[j];
      dot += d[j] * out[j];
    }
    dot = block_sum(dot, red);
    if (threadIdx.x == 0) dgate[p] += dot;
  }
}

// Block per item: dx = sum over kept choices c = 0..k-1 (in order) of dbuf rows.
__global__ void dispatch_backward_kernel(int64_t items, int k, int64_t n, int dim,
                                         const float* dbuf, const int32_t* row, float* dx) {
  for (int64_t i = blockIdx.x; i < items; i += gridDim.x) {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      float acc = 0.0f;
      for (int c = 0; c < k; ++c) {
        const int r = row[i * k + c];
        if (r >= 0) acc += dbuf[int64_t{r} * dim + j];
      }
      dx[i * n + j] = acc;
    }
  }
}

// dst[i, o, :] = src[o, i, :] over [outer, inner, block] floats.
template <typename T>
__global__ void transpose_blocks_kernel(int64_t outer, int64_t inner, int64_t block, const T* src,
                                        T* dst) {
  VMOE_GRID_LOOP(j, outer * inner * block) {
    const int64_t b = j % block, t = j / block, o = t % outer, i = t / outer;
    dst[j] = src[(o * inner + i) * block + b];
  }
}

template <typename T>
void launch_transpose(cudaStream_t stream, int64_t outer, int64_t inner, int64_t block,
                      const T* src, T* dst) {
  const int64_t n = outer * inner * block;
  if (n <= 0) return;
  transpose_blocks_kernel<<<grid_for(n), kThreads, 0, stream>>>(outer, inner, block, src, dst);
  VMOE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void CudaBackend::moe_buffer_rows(int64_t groups, int items, int k, int /*experts*/,
                                  int capacity, int item_rows, const int32_t* expert,
                                  const int32_t* slot, int32_t* row) {
  const int64_t n = groups * items * k;
  if (n <= 0) return;
  buffer_rows_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, items, k, groups, capacity,
                                                            item_rows, expert, slot, row);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::moe_dispatch(int64_t items, int k, int item_rows, int dim, const float* x,
                               const int32_t* row, float* buf) {
  const int64_t n = int64_t{item_rows} * dim;
  if (items <= 0 || k <= 0 || n <= 0) return;
  dispatch_kernel<<<grid_cap(items * k), row_threads(n), 0, stream_>>>(items * k, k, n, dim, x,
                                                                       row, buf);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::moe_combine(int64_t items, int k, int item_rows, int dim, const float* buf,
                              const int32_t* row, const float* gate, float* y) {
  const int64_t n = int64_t{item_rows} * dim;
  if (items <= 0 || n <= 0) return;
  combine_kernel<<<grid_cap(items), row_threads(n), 0, stream_>>>(items, k, n, dim, buf, row,
                                                                  gate, y);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::moe_combine_backward(int64_t items, int k, int item_rows, int dim,
                                       const float* dy, const float* buf, const int32_t* row,
                                       const float* gate, float* dbuf, float* dgate) {
  const int64_t n = int64_t{item_rows} * dim;
  if (items <= 0 || k <= 0 || n <= 0) return;
  combine_backward_kernel<<<grid_cap(items * k), row_threads(n), 0, stream_>>>(
      items * k, k, n, dim, dy, buf, row, gate, dbuf, dgate);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::moe_dispatch_backward(int64_t items, int k, int item_rows, int dim,
                                        const float* dbuf, const int32_t* row, float* dx) {
  const int64_t n = int64_t{item_rows} * dim;
  if (items <= 0 || n <= 0) return;
  dispatch_backward_kernel<<<grid_cap(items), row_threads(n), 0, stream_>>>(items, k, n, dim,
                                                                            dbuf, row, dx);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::transpose_blocks(int64_t outer, int64_t inner, int64_t block, const float* src,
                                   float* dst) {
  launch_transpose(stream_, outer, inner, block, src, dst);
}

void CudaBackend::transpose_blocks(int64_t outer, int64_t inner, int64_t block, const uint16_t* src,
                                   uint16_t* dst) {
  launch_transpose(stream_, outer, inner, block, src, dst);
}

}  // namespace vmoe
