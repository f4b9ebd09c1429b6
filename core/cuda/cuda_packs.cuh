// 128-bit memory transactions for the element-wise kernels. A Pack<W> holds
// W consecutive floats, moved as one float4 when W = 4 and as one float when
// W = 1; kernels are templates on W and do the same arithmetic per element
// either way, so both widths give the same bits. pack_width() picks 4 where
// every pointer is aligned for it and the counts divide by 4.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "core/math.h"

namespace vmoe {
namespace {  // each translation unit gets its own copy (see cuda_launch.cuh)

template <int W>
struct Pack {
  float v[W];
};

// Pack i of p (elements [W i, W i + W)).
template <int W>
__device__ __forceinline__ Pack<W> load(const float* p, int64_t i) {
  Pack<W> r;
  if constexpr (W == 4) {
    const float4 q = reinterpret_cast<const float4*>(p)[i];
    r.v[0] = q.x, r.v[1] = q.y, r.v[2] = q.z, r.v[3] = q.w;
  } else {
    r.v[0] = p[i];
  }
  return r;
}
template <int W>
__device__ __forceinline__ void store(float* p, int64_t i, const Pack<W>& r) {
  if constexpr (W == 4) {
    reinterpret_cast<float4*>(p)[i] = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  } else {
    p[i] = r.v[0];
  }
}
// The bf16 copy of a pack (64 bits for 4), where one is asked for (p16 non-null).
template <int W>
__device__ __forceinline__ void store_bf16(uint16_t* p16, int64_t i, const Pack<W>& r) {
  if (p16 == nullptr) return;
  if constexpr (W == 4) {  // two cvt.rn.bf16x2: the same bits as to_bf16 on each
    const __nv_bfloat162 lo = __floats2bfloat162_rn(r.v[0], r.v[1]);
    const __nv_bfloat162 hi = __floats2bfloat162_rn(r.v[2], r.v[3]);
    uint2 q;
    memcpy(&q.x, &lo, sizeof q.x);
    memcpy(&q.y, &hi, sizeof q.y);
    reinterpret_cast<uint2*>(p16)[i] = q;
  } else {
    p16[i] = to_bf16(r.v[0]);
  }
}
template <int W>
__device__ __forceinline__ Pack<W> load_bf16(const uint16_t* p16, int64_t i) {
  Pack<W> r;
  if constexpr (W == 4) {
    const ushort4 q = reinterpret_cast<const ushort4*>(p16)[i];
    r.v[0] = from_bf16(q.x), r.v[1] = from_bf16(q.y), r.v[2] = from_bf16(q.z),
    r.v[3] = from_bf16(q.w);
  } else {
    r.v[0] = from_bf16(p16[i]);
  }
  return r;
}

// y[i] = v, and y16[i] = bfloat16(v) where a bf16 copy is asked for (one element:
// the row kernels).
__device__ __forceinline__ void store(float* y, uint16_t* y16, int64_t i, float v) {
  if (y != nullptr) y[i] = v;  // null: the bf16 copy alone
  if (y16 != nullptr) y16[i] = to_bf16(v);
}

// Pack i of y, and of y16 where a bf16 copy is asked for; y null: the copy alone.
template <int W>
__device__ __forceinline__ void store(float* y, uint16_t* y16, int64_t i, const Pack<W>& r) {
  if (y != nullptr) store<W>(y, i, r);
  store_bf16<W>(y16, i, r);
}

// 4 when n divides by 4, every float pointer is 16-byte aligned and every
// bf16 pointer 8-byte aligned (null pointers are not read), else 1.
inline int pack_width(int64_t n, std::initializer_list<const void*> floats,
                      std::initializer_list<const void*> bf16s = {}) {
  if (n % 4 != 0) return 1;
  for (const void* p : floats)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return 1;
  for (const void* p : bf16s)
    if (reinterpret_cast<uintptr_t>(p) % 8 != 0) return 1;
  return 4;
}

// Packs a thread loads before it stores any (a load after a store to a
// pointer that may alias waits for that store: one round trip per pack).
constexpr int kPackBatch = 4;

}  // namespace
}  // namespace vmoe

// A block's threads over packs [0, n) in batches: thread t takes packs
// j0 = t, t + kPackBatch * blockDim.x, ..., and within a batch (each
// VMOE_PACK_BATCH statement, unrolled) the packs j = j0 + q * blockDim.x
// below n. Load a batch in one such statement, store it in the next.
// clang-format off
#define VMOE_PACK_BATCH_LOOP(j0, n) \
  for (int64_t j0 = threadIdx.x; j0 < (n); j0 += int64_t{kPackBatch} * blockDim.x)
#define VMOE_PACK_BATCH(q, j, j0, n)              \
  _Pragma("unroll")                               \
  for (int q = 0; q < kPackBatch; ++q)            \
    if (const int64_t j = j0 + int64_t{q} * blockDim.x; j < (n))
// clang-format on

// Launches kernel<4> over n / 4 packs or kernel<1> over n elements (the
// kernel's first argument is its pack count), on the backend's stream.
#define VMOE_LAUNCH_PACKED(kernel, width, n, ...)                                   \
  do {                                                                              \
    if ((width) == 4) {                                                             \
      kernel<4><<<grid_for((n) / 4), kThreads, 0, stream_>>>((n) / 4, __VA_ARGS__); \
    } else {                                                                        \
      kernel<1><<<grid_for(n), kThreads, 0, stream_>>>((n), __VA_ARGS__);           \
    }                                                                               \
  } while (0)
