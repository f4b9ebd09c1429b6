// Launch shapes and block reductions shared by the CUDA backend's kernels
// (cuda_ops.cu, cuda_train_ops.cu, cuda_router.cu, cuda_moe.cu,
// cuda_bf16.cu). Every shape depends only on the sizes, and reductions have a
// fixed shape, so results are deterministic run to run.
#pragma once

#include <algorithm>
#include <cstdint>

// Grid-stride loop of the calling thread over [0, n).
#define VMOE_GRID_LOOP(i, n)                                                \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{gridDim.x} * blockDim.x)
// Loop of the calling block over rows [0, rows): one block per row.
#define VMOE_ROW_LOOP(r, rows) for (int64_t r = blockIdx.x; r < (rows); r += gridDim.x)

namespace vmoe {
namespace {  // each translation unit gets its own copy (device code is not shared across TUs)

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `work` items.
inline unsigned grid_for(int64_t work, int threads = kThreads) {
  return static_cast<unsigned>(std::clamp<int64_t>((work + threads - 1) / threads, 1, 1 << 20));
}
// Blocks for a loop with one block per unit (units beyond the grid loop).
inline unsigned grid_cap(int64_t units, int64_t cap = 1 << 20) {
  return static_cast<unsigned>(std::clamp<int64_t>(units, 1, cap));
}
inline unsigned grid_rows(int64_t rows) { return grid_cap(rows); }
// Threads for a block that loops over a row of n: a multiple of 32, at most 256.
inline int row_threads(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + 31) / 32 * 32, 32, kThreads));
}
__device__ inline int tid() { return static_cast<int>(threadIdx.x); }
__device__ inline int nthreads() { return static_cast<int>(blockDim.x); }
__device__ inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {  // std::max's rule, as the CPU
  __device__ float operator()(float a, float b) const { return a < b ? b : a; }
};

// Reduces v over the warp in a fixed butterfly order; every lane gets the result.
template <class T, class Op>
__device__ T warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// Warp-per-row kernels: a row of up to 32 * N values held in registers, lane
// l owning columns l, l + 32, ... (coalesced). Rows are strided over warps.
#define VMOE_WARP_ROW_LOOP(r, rows)                                                          \
  for (int64_t r = int64_t{blockIdx.x} * (blockDim.x >> 5) + (threadIdx.x >> 5); r < (rows); \
       r += int64_t{gridDim.x} * (blockDim.x >> 5))
__device__ inline int lane_id() {
  return static_cast<int>(threadIdx.x & 31);
}
// Blocks of kThreads for warp-per-row kernels over `rows`.
inline unsigned grid_warp_rows(int64_t rows) {
  return grid_cap((rows + kThreads / 32 - 1) / (kThreads / 32));
}

// Reduces v over the block (blockDim.x a multiple of 32) in a fixed order and
// returns the result to every thread. `red` is shared [32]; all threads call.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T* red) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();  // readers of the previous reduction are done with red
  if ((tid() & 31) == 0) red[tid() >> 5] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < (nthreads() >> 5); ++w) v = op(v, red[w]);
  return v;
}

}  // namespace
}  // namespace vmoe
