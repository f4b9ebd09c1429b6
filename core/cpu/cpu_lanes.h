// Reductions for the CPU loops (core/cpu/cpu_loops.h) that give the same bits
// at every vector width: 16 fixed lanes, joined in a fixed order. Internal to
// core/cpu's loop files; each is inlined into its caller's per-ISA copy.
#pragma once

#include <cmath>
#include <cstdint>

// For a loop file's helpers: inlined into each per-ISA copy of its caller
// (core/cpu/cpu_isa.h). A helper GCC leaves out of line is compiled for the
// baseline only, where fmaf is a libm call.
#define VMOE_CPU_INLINE inline __attribute__((always_inline))

namespace vmoe::cpu_loops {

// op over f(0..n-1) in 16 lanes (lane l takes i = l mod 16, in order) joined
// by a fixed tree: vectorises at any width, and gives the same bits at all.
constexpr int kLanes = 16;

// The fixed tree that joins the lanes.
template <typename T, typename Op>
VMOE_CPU_INLINE T lane_tree(T* acc, Op op) {
  for (int w = kLanes / 2; w > 0; w /= 2) {
#pragma omp simd
    for (int l = 0; l < w; ++l) acc[l] = op(acc[l], acc[l + w]);
  }
  return acc[0];
}

// step(i, l) for i = 0..n-1 in order, lane l = i mod kLanes: whole groups
// of kLanes as one simd loop, then the tail.
template <typename Step>
VMOE_CPU_INLINE void for_lanes(int64_t n, Step step) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) step(i + l, l);
  }
  for (int l = 0; i + l < n; ++l) step(i + l, l);
}

template <typename T, typename F, typename Op>
VMOE_CPU_INLINE T lane_reduce(int64_t n, T init, F f, Op op) {
  T acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = init;
  for_lanes(n, [&](int64_t i, int l) { acc[l] = op(acc[l], f(i)); });
  return lane_tree(acc, op);
}

// a + b, as a type (a function object the simd loops inline; a function
// pointer there is an indirect call per element).
struct Plus {
  template <typename T>
  T operator()(T a, T b) const {
    return a + b;
  }
};

template <typename T, typename F>
VMOE_CPU_INLINE T lane_sum(int64_t n, F f) {
  return lane_reduce(n, T(0), f, Plus{});
}

// The larger of a and b (a plain select, as MAXPS computes it, so it
// vectorises; which NaN survives follows the order, which the lanes fix).
struct Max {
  float operator()(float a, float b) const { return a > b ? a : b; }
};

// The largest f(i).
template <typename F>
VMOE_CPU_INLINE float lane_max(int64_t n, F f) {
  return lane_reduce(n, -INFINITY, f, Max{});
}

}  // namespace vmoe::cpu_loops
