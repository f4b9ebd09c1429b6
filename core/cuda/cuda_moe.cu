// CudaBackend: expert buffers and the data movement of mixture-of-experts
// layers (buffer rows, dispatch, combine, their backwards, row-block copies).
// Semantics: core/backend.h, parallel/README.md; the same decisions and
// layouts as core/cpu_backend_moe.cpp. Deterministic: integer atomics only,
// each output row written by one thread block, fixed-shape reductions. The
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

// filled[g * E + e] += kept choices (integer atomics: order-independent).
__global__ void count_filled_kernel(int64_t n, int items, int k, int experts,
                                    const int32_t* expert, const int32_t* slot, int* filled) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n;
       t += int64_t{gridDim.x} * blockDim.x)
    if (slot[t] >= 0) atomicAdd(&filled[t / k / items * experts + expert[t]], 1);
}

// One block: base[t] (t = e * groups + g, t <= N) = exclusive prefix sum of
// the slot-rows (in items) of (e, g): filled (compact) or capacity (fixed);
// then expert_begin, expert_rows and filled_out. Integer sums: exact.
__global__ void buffer_scan_kernel(int64_t groups, int experts, int capacity, int item_rows,
                                   bool compact, const int* filled, int64_t* base,
                                   int64_t* expert_begin, int64_t* expert_rows,
                                   int32_t* filled_out) {
  __shared__ int64_t part[1024];
  const int64_t N = groups * experts, chunk = (N + blockDim.x - 1) / blockDim.x;
  const int64_t lo = min64(N, threadIdx.x * chunk), hi = min64(N, lo + chunk);
  auto value = [&](int64_t t) -> int64_t {
    return compact ? filled[(t % groups) * experts + t / groups] : capacity;
  };
  int64_t sum = 0;
  for (int64_t t = lo; t < hi; ++t) sum += value(t);
  part[threadIdx.x] = sum;
  __syncthreads();
  for (unsigned off = 1; off < blockDim.x; off <<= 1) {  // inclusive Hillis-Steele scan
    const int64_t v = part[threadIdx.x] + (threadIdx.x >= off ? part[threadIdx.x - off] : 0);
    __syncthreads();
    part[threadIdx.x] = v;
    __syncthreads();
  }
  int64_t run = part[threadIdx.x] - sum;
  for (int64_t t = lo; t < hi; ++t) {
    base[t] = run;
    run += value(t);
    if (filled_out != nullptr) filled_out[t] = filled[(t % groups) * experts + t / groups];
  }
  if (threadIdx.x == blockDim.x - 1) base[N] = run;  // the total
  __syncthreads();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) {
    const int64_t b = base[e * groups];
    expert_begin[e] = b * item_rows;
    expert_rows[e] = (base[(e + 1) * groups] - b) * item_rows;
  }
}

__global__ void buffer_rows_kernel(int64_t n, int items, int k, int64_t groups, int item_rows,
                                   const int32_t* expert, const int32_t* slot,
                                   const int64_t* base, int32_t* row) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n;
       t += int64_t{gridDim.x} * blockDim.x) {
    const int s = slot[t];
    row[t] = s < 0 ? -1
                   : static_cast<int32_t>((base[expert[t] * groups + t / k / items] + s) *
                                          item_rows);
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

// blockIdx.x: row block (looping); blockIdx.y splits a block's elements.
__global__ void copy_row_blocks_kernel(int64_t n, const int64_t* src_row, const int64_t* dst_row,
                                       const int64_t* rows, int dim, const float* src,
                                       float* dst) {
  for (int64_t b = blockIdx.x; b < n; b += gridDim.x) {
    const int64_t count = rows[b] * dim;
    const float* s = src + src_row[b] * dim;
    float* d = dst + dst_row[b] * dim;
    for (int64_t j = int64_t{blockIdx.y} * blockDim.x + threadIdx.x; j < count;
         j += int64_t{gridDim.y} * blockDim.x)
      d[j] = s[j];
  }
}

}  // namespace

void CudaBackend::moe_buffer_rows(int64_t groups, int items, int k, int experts, int capacity,
                                  int item_rows, bool compact, const int32_t* expert,
                                  const int32_t* slot, int32_t* row, int64_t* expert_begin,
                                  int64_t* expert_rows, int32_t* filled) {
  if (experts <= 0) return;
  const int64_t N = groups * experts, n = groups * items * k;
  // Scratch: base [N + 1] int64, then counts [groups, E] int32.
  char* s = static_cast<char*>(scratch((N + 1) * sizeof(int64_t) + N * sizeof(int)));
  int64_t* base = reinterpret_cast<int64_t*>(s);
  int* counts = reinterpret_cast<int*>(s + (N + 1) * sizeof(int64_t));
  if (N > 0) VMOE_CUDA_CHECK(cudaMemsetAsync(counts, 0, N * sizeof(int), stream_));
  if (n > 0) {
    count_filled_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, items, k, experts, expert, slot,
                                                               counts);
    VMOE_CUDA_LAUNCH_CHECK();
  }
  buffer_scan_kernel<<<1, 1024, 0, stream_>>>(groups, experts, capacity, item_rows, compact,
                                              counts, base, expert_begin, expert_rows, filled);
  VMOE_CUDA_LAUNCH_CHECK();
  if (n > 0) {
    buffer_rows_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, items, k, groups, item_rows,
                                                              expert, slot, base, row);
    VMOE_CUDA_LAUNCH_CHECK();
  }
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

void CudaBackend::copy_row_blocks(int64_t n, const int64_t* src_row, const int64_t* dst_row,
                                  const int64_t* rows, int dim, const float* src, float* dst) {
  if (n <= 0 || dim <= 0) return;
  // The block sizes live on the device: split each block ~2048/n ways.
  const dim3 grid(grid_cap(n, 65535), static_cast<unsigned>(std::clamp<int64_t>(2048 / n, 1, 64)));
  copy_row_blocks_kernel<<<grid, kThreads, 0, stream_>>>(n, src_row, dst_row, rows, dim, src,
                                                         dst);
  VMOE_CUDA_LAUNCH_CHECK();
}

}  // namespace vmoe
