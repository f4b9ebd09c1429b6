// Column sums for the CUDA backend's kernels: out[c] (op)= sum over rows of
// f(r, c), in two deterministic passes (per-chunk partial sums into scratch,
// then eight lanes per column summing the chunks in a fixed order); bias gradients,
// LayerNorm's parameter gradients, the embedding's. Included by the .cu files
// that need them (cuda_elementwise.cu, cuda_ops.cu).
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_launch.cuh"

namespace vmoe {
namespace {  // each translation unit gets its own copy (see cuda_launch.cuh)

constexpr int kColTile = 32, kColLanes = 8;  // block (32 columns, 8 row lanes)

struct ColPlan {
  int64_t chunk_rows;  // rows summed by one block of pass 1
  int chunks;          // partial sums per column
};
ColPlan col_plan(int64_t rows) {
  const int64_t chunk = std::max<int64_t>(64, (rows + 1023) / 1024);  // at most 1024 chunks
  return {chunk, static_cast<int>((rows + chunk - 1) / chunk)};
}

// Pass 1: partial[p, c] = sum of f(r, c) over the rows of chunk p (lanes summed in order).
template <class F>
__global__ void col_partial_kernel(int64_t rows, int64_t cols, int64_t chunk_rows, F f,
                                   float* partial) {
  __shared__ float tile[kColLanes][kColTile];
  const int64_t c = blockIdx.x * int64_t{kColTile} + threadIdx.x;
  const int64_t begin = blockIdx.y * chunk_rows;
  const int64_t end = begin + chunk_rows < rows ? begin + chunk_rows : rows;
  float s = 0.0f;
  if (c < cols)
    for (int64_t r = begin + threadIdx.y; r < end; r += kColLanes) s += f(r, c);
  tile[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int l = 1; l < kColLanes; ++l) s += tile[l][threadIdx.x];
    partial[blockIdx.y * cols + c] = s;
  }
}

// Pass 2: acc(c, the sum of partial[p, c] over the chunks p), lanes taking
// chunks p = lane, lane + kColLanes, ... and then summed in lane order.
template <class Acc>
__global__ void col_finish_kernel(int64_t cols, int chunks, const float* partial, Acc acc) {
  __shared__ float tile[kColLanes][kColTile];
  const int64_t c = blockIdx.x * int64_t{kColTile} + threadIdx.x;
  float s = 0.0f;
  if (c < cols)
    for (int p = threadIdx.y; p < chunks; p += kColLanes) s += partial[p * cols + c];
  tile[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int l = 1; l < kColLanes; ++l) s += tile[l][threadIdx.x];
    acc(c, s);
  }
}

// Pass 2 alone, for kernels that write pass 1's partial[chunks, cols] as
// they go (the GELU's backward, unpacking heads, LayerNorm's backward).
template <class Acc>
void finish_column_sums(cudaStream_t stream, const float* partial, int chunks, int64_t cols,
                        Acc acc) {
  const unsigned blocks = static_cast<unsigned>((cols + kColTile - 1) / kColTile);
  col_finish_kernel<<<blocks, dim3(kColTile, kColLanes), 0, stream>>>(cols, chunks, partial, acc);
  VMOE_CUDA_LAUNCH_CHECK();
}

// Both passes; `partial` is scratch of plan.chunks * cols floats.
template <class F, class Acc>
void column_sums(cudaStream_t stream, float* partial, ColPlan plan, int64_t rows, int64_t cols, F f,
                 Acc acc) {
  const dim3 grid(static_cast<unsigned>((cols + kColTile - 1) / kColTile),
                  static_cast<unsigned>(plan.chunks));
  col_partial_kernel<<<grid, dim3(kColTile, kColLanes), 0, stream>>>(rows, cols, plan.chunk_rows, f,
                                                                     partial);
  VMOE_CUDA_LAUNCH_CHECK();
  finish_column_sums(stream, partial, plan.chunks, cols, acc);
}

// f: element (r, c) of a row-major matrix with leading dimension ld.
struct RowsOf {
  const float* x;
  int64_t ld;
  __device__ float operator()(int64_t r, int64_t c) const { return x[r * ld + c]; }
};
// Column c = e * cols + j of expert-major rows [experts, rows, cols].
struct ExpertRowsOf {
  const float* x;
  int64_t rows;
  int cols;
  __device__ float operator()(int64_t r, int64_t c) const {
    return x[(c / cols * rows + r) * cols + c % cols];
  }
};
// acc: out[c] += s.
struct AddTo {
  float* out;
  __device__ void operator()(int64_t c, float s) const { out[c] += s; }
};

}  // namespace
}  // namespace vmoe
