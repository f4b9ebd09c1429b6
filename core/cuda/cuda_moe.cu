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
#include "core/cuda/cuda_packs.cuh"

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

// The data movement kernels run a block per item (or per item and choice)
// over the item's n floats in packs of W (cuda_packs.cuh; W = 4 where n, dim
// and the pointers allow), kPackBatch packs a thread loaded before it stores
// any (VMOE_PACK_BATCH): one float per thread with a load after each store (which may alias)
// was a memory round trip per element (B/16 on an H200: the four kernels
// 2.8 ms a step; whole images of Mobile V-MoE, n = tokens x dim, far worse).
// np = n / W packs of an item; dimp = dim / W packs of a buffer row.

// Block per (item, choice): buf rows of a kept choice = the item's rows, and
// their bf16 copy where buf16 is given.
template <int W>
__global__ void dispatch_kernel(int64_t pairs, int k, int64_t np, int64_t dimp, const float* x,
                                const int32_t* row, float* buf, uint16_t* buf16) {
  for (int64_t p = blockIdx.x; p < pairs; p += gridDim.x) {
    const int r = row[p];
    if (r < 0) continue;
    const float* src = x + p / k * np * W;
    // Either may be null (not both): the bf16 copy alone is what a bf16 exchange sends.
    float* dst = buf != nullptr ? buf + int64_t{r} * dimp * W : nullptr;
    uint16_t* dst16 = buf16 != nullptr ? buf16 + int64_t{r} * dimp * W : nullptr;
    VMOE_PACK_BATCH_LOOP(j0, np) {
      Pack<W> v[kPackBatch];
      VMOE_PACK_BATCH(q, j, j0, np) v[q] = load<W>(src, j);
      VMOE_PACK_BATCH(q, j, j0, np) store<W>(dst, dst16, j, v[q]);
    }
  }
}

// Block per item: y = sum over kept choices c = 0..k-1 (in order) of gate *
// buf rows (the combine), or of the rows alone where gate is null (the
// dispatch's backward). A choice's packs are loaded as one batch, so an item
// waits k round trips.
template <int W>
__global__ void gather_sum_kernel(int64_t items, int k, int64_t np, int64_t dimp, const float* buf,
                                  const int32_t* row, const float* gate, float* y) {
  for (int64_t i = blockIdx.x; i < items; i += gridDim.x) {
    VMOE_PACK_BATCH_LOOP(j0, np) {
      Pack<W> acc[kPackBatch], b[kPackBatch];
      VMOE_PACK_BATCH(q, j, j0, np) for (int l = 0; l < W; ++l) acc[q].v[l] = 0.0f;
      for (int c = 0; c < k; ++c) {
        const int r = row[i * k + c];
        if (r < 0) continue;
        VMOE_PACK_BATCH(q, j, j0, np) b[q] = load<W>(buf + int64_t{r} * dimp * W, j);
        if (gate != nullptr) {
          const float g = gate[i * k + c];
          VMOE_PACK_BATCH(q, j, j0, np)
          for (int l = 0; l < W; ++l) acc[q].v[l] = fmaf(g, b[q].v[l], acc[q].v[l]);
        } else {
          VMOE_PACK_BATCH(q, j, j0, np) for (int l = 0; l < W; ++l) acc[q].v[l] += b[q].v[l];
        }
      }
      VMOE_PACK_BATCH(q, j, j0, np) store<W>(y + i * np * W, j, acc[q]);
    }
  }
}

// Block per (item, choice): dbuf rows = gate * dy; dgate += <dy, buf rows>.
template <int W>
__global__ void combine_backward_kernel(int64_t pairs, int k, int64_t np, int64_t dimp,
                                        const float* dy, const float* buf, const int32_t* row,
                                        const float* gate, float* dbuf, float* dgate,
                                        uint16_t* dbuf16) {
  __shared__ float red[32];
  for (int64_t p = blockIdx.x; p < pairs; p += gridDim.x) {
    const int r = row[p];
    if (r < 0) continue;  // uniform over the block
    const float* d = dy + p / k * np * W;
    const float* out = buf + int64_t{r} * dimp * W;
    float* dout = dbuf != nullptr ? dbuf + int64_t{r} * dimp * W : nullptr;  // null: the copy alone
    uint16_t* dout16 = dbuf16 != nullptr ? dbuf16 + int64_t{r} * dimp * W : nullptr;
    const float w = gate[p];
    float dot = 0.0f;
    VMOE_PACK_BATCH_LOOP(j0, np) {
      Pack<W> dv[kPackBatch], ov[kPackBatch];
      VMOE_PACK_BATCH(q, j, j0, np) {
        dv[q] = load<W>(d, j);
        ov[q] = load<W>(out, j);
      }
      VMOE_PACK_BATCH(q, j, j0, np) {
        Pack<W> g;
        for (int l = 0; l < W; ++l) {
          g.v[l] = w * dv[q].v[l];
          dot += dv[q].v[l] * ov[q].v[l];
        }
        store<W>(dout, dout16, j, g);
      }
    }
    dot = block_sum(dot, red);
    if (threadIdx.x == 0) dgate[p] += dot;
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

namespace {
// 4 where a buffer row (dim, hence an item's n = item_rows dim) divides by 4
// and the pointers are aligned (16 bytes; 8 for bf16 copies), else 1.
int moe_width(int dim, std::initializer_list<const void*> floats,
              std::initializer_list<const void*> bf16s = {}) {
  return dim % 4 == 0 ? pack_width(4, floats, bf16s) : 1;
}
}  // namespace

// kernel<W>(blocks, k, n / W, dim / W, ...) on `blocks` blocks (one per item
// or per pair), with threads enough for one batch of an item's packs.
#define VMOE_LAUNCH_MOE(kernel, width, blocks, k, n, dim, ...)                               \
  do {                                                                                       \
    const int w_ = (width);                                                                  \
    const int threads_ = row_threads(((n) / w_ + kPackBatch - 1) / kPackBatch);              \
    if (w_ == 4) {                                                                           \
      kernel<4><<<grid_cap(blocks), threads_, 0, stream_>>>(blocks, k, (n) / 4, (dim) / 4,   \
                                                            __VA_ARGS__);                    \
    } else {                                                                                 \
      kernel<1><<<grid_cap(blocks), threads_, 0, stream_>>>(blocks, k, n, dim, __VA_ARGS__); \
    }                                                                                        \
  } while (0)

void CudaBackend::moe_dispatch(int64_t items, int k, int item_rows, int dim, const float* x,
                               const int32_t* row, float* buf, uint16_t* buf16) {
  const int64_t n = int64_t{item_rows} * dim;
  if (items <= 0 || k <= 0 || n <= 0) return;
  VMOE_LAUNCH_MOE(dispatch_kernel, moe_width(dim, {x, buf}, {buf16}), items * k, k, n, dim, x, row,
                  buf, buf16);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::moe_combine(int64_t items, int k, int item_rows, int dim, const float* buf,
                              const int32_t* row, const float* gate, float* y) {
  const int64_t n = int64_t{item_rows} * dim;
  if (items <= 0 || n <= 0) return;
  VMOE_LAUNCH_MOE(gather_sum_kernel, moe_width(dim, {buf, y}), items, k, n, dim, buf, row, gate, y);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::moe_combine_backward(int64_t items, int k, int item_rows, int dim,
                                       const float* dy, const float* buf, const int32_t* row,
                                       const float* gate, float* dbuf, float* dgate,
                                       uint16_t* dbuf16) {
  const int64_t n = int64_t{item_rows} * dim;
  if (items <= 0 || k <= 0 || n <= 0) return;
  VMOE_LAUNCH_MOE(combine_backward_kernel, moe_width(dim, {dy, buf, dbuf}, {dbuf16}), items * k, k,
                  n, dim, dy, buf, row, gate, dbuf, dgate, dbuf16);
  VMOE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::moe_dispatch_backward(int64_t items, int k, int item_rows, int dim,
                                        const float* dbuf, const int32_t* row, float* dx) {
  const int64_t n = int64_t{item_rows} * dim;
  if (items <= 0 || n <= 0) return;
  VMOE_LAUNCH_MOE(gather_sum_kernel, moe_width(dim, {dbuf, dx}), items, k, n, dim, dbuf, row,
                  nullptr, dx);
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
