// The CPU's softmax over rows (attention's scores), forward and backward.
//
// Long rows go row by row. Rows as short as attention's over a few patches
// (T = 17 for 4 x 4 patches and a class token) would spend their time on
// each row's loop set-up, tails and lane tree, so up to kTileCols columns
// they go 16 at a time through a tile transposed so that a row is a lane:
// the max, the exp, the sums and the scaling run down the columns for all
// 16 rows at once. The tile's reductions keep the lanes' order (column c into
// partial c mod kLanes, joined by the same tree), so both paths give the
// same bits.
#include <algorithm>
#include <cmath>

#include "core/cpu/cpu_isa.h"
#include "core/cpu/cpu_lanes.h"
#include "core/cpu/cpu_loops.h"
#include "core/math.h"

namespace vmoe::cpu_loops {

namespace {

constexpr int kTileRows = 16;  // one row per lane of a 16-float vector
constexpr int kTileCols = 32;  // the longest row a tile takes

using Tile = float[kTileCols][kTileRows];

// t[c][r] = x's row r, column c: the tile's kTileRows rows, cols columns.
VMOE_CPU_INLINE void load_tile(const float* x, int ld, int cols, Tile& t) {
  for (int c = 0; c < cols; ++c) {
#pragma omp simd
    for (int r = 0; r < kTileRows; ++r) t[c][r] = x[int64_t{r} * ld + c];
  }
}

// The inverse, with each row's gap (columns cols..ld-1) zeroed. (A gather
// from the tile where the ISA has a cheap one: not a simd loop on AVX2.)
VMOE_CPU_INLINE void store_tile(const Tile& t, int cols, int ld, float* x) {
  for (int r = 0; r < kTileRows; ++r) {
    float* xr = x + int64_t{r} * ld;
    for (int c = 0; c < cols; ++c) xr[c] = t[c][r];
    std::fill(xr + cols, xr + ld, 0.0f);
  }
}

// out[r] = op over t[c][r] for c = 0..cols-1, in lane_reduce's order.
template <typename Op>
VMOE_CPU_INLINE void tile_reduce(const Tile& t, int cols, float init, Op op, float* out) {
  alignas(64) float part[kLanes][kTileRows];
  for (int l = 0; l < kLanes; ++l) std::fill_n(part[l], kTileRows, init);
  for (int c = 0; c < cols; ++c) {
    float* p = part[c % kLanes];
#pragma omp simd
    for (int r = 0; r < kTileRows; ++r) p[r] = op(p[r], t[c][r]);
  }
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int l = 0; l < w; ++l) {
#pragma omp simd
      for (int r = 0; r < kTileRows; ++r) part[l][r] = op(part[l][r], part[l + w][r]);
    }
  }
  std::copy_n(part[0], kTileRows, out);
}

VMOE_CPU_INLINE void softmax_tile(int cols, int ld, float scale, float* x) {
  alignas(64) Tile t;
  alignas(64) float mx[kTileRows], inv[kTileRows];
  load_tile(x, ld, cols, t);
  tile_reduce(t, cols, -INFINITY, Max{}, mx);
  for (int c = 0; c < cols; ++c) {
#pragma omp simd
    for (int r = 0; r < kTileRows; ++r) t[c][r] = exp_nonpositive(scale * (t[c][r] - mx[r]));
  }
  tile_reduce(t, cols, 0.0f, Plus{}, inv);
#pragma omp simd
  for (int r = 0; r < kTileRows; ++r) inv[r] = 1.0f / inv[r];
  for (int c = 0; c < cols; ++c) {
#pragma omp simd
    for (int r = 0; r < kTileRows; ++r) t[c][r] *= inv[r];
  }
  store_tile(t, cols, ld, x);
}

VMOE_CPU_INLINE void softmax_backward_tile(int cols, int ld, float scale, const float* p,
                                           float* d) {
  alignas(64) Tile tp, td, prod;
  alignas(64) float dot[kTileRows];
  load_tile(p, ld, cols, tp);
  load_tile(d, ld, cols, td);
  for (int c = 0; c < cols; ++c) {
#pragma omp simd
    for (int r = 0; r < kTileRows; ++r) prod[c][r] = tp[c][r] * td[c][r];
  }
  tile_reduce(prod, cols, 0.0f, Plus{}, dot);
  for (int c = 0; c < cols; ++c) {
#pragma omp simd
    for (int r = 0; r < kTileRows; ++r) td[c][r] = scale * tp[c][r] * (td[c][r] - dot[r]);
  }
  store_tile(td, cols, ld, d);
}

// The rows of [from, rows) row by row. The exp runs as one flat loop over a
// chunk of rows (gaps zeroed first, then again): rows of a few dozen would
// otherwise spend as long in the vector loop's scalar tail as in its body.
// Each element gets the same operations either way (-ffp-contract=off).
VMOE_CPU_INLINE void softmax_rows(int64_t rows, int cols, int ld, float scale, float* x) {
  const int64_t chunk = std::max<int64_t>(1, 8192 / ld);  // 32 KiB of rows: stays in L1/L2
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    float* xc = x + r0 * ld;
    for (int64_t r = 0; r < n; ++r) {
      float* xr = xc + r * ld;
      const float mx = lane_max(cols, [&](int64_t c) { return xr[c]; });
#pragma omp simd
      for (int c = 0; c < cols; ++c) xr[c] = scale * (xr[c] - mx);
      std::fill(xr + cols, xr + ld, 0.0f);
    }
    const int64_t span = (n - 1) * ld + cols;
#pragma omp simd
    for (int64_t i = 0; i < span; ++i) xc[i] = exp_nonpositive(xc[i]);
    for (int64_t r = 0; r < n; ++r) {
      float* xr = xc + r * ld;
      const float inv = 1.0f / lane_sum<float>(cols, [&](int64_t c) { return xr[c]; });
#pragma omp simd
      for (int c = 0; c < cols; ++c) xr[c] *= inv;
      std::fill(xr + cols, xr + ld, 0.0f);
    }
  }
}

// The rows that go through tiles: whole tiles of rows short enough.
int64_t tiled_rows(int64_t rows, int cols) {
  return cols <= kTileCols ? rows / kTileRows * kTileRows : 0;
}

}  // namespace

VMOE_CPU_CLONES void softmax_forward(int64_t rows, int cols, int ld, float scale, float* x) {
  const int64_t tiled = tiled_rows(rows, cols);
  for (int64_t r = 0; r < tiled; r += kTileRows) softmax_tile(cols, ld, scale, x + r * ld);
  softmax_rows(rows - tiled, cols, ld, scale, x + tiled * ld);
}

VMOE_CPU_CLONES void softmax_backward(int64_t rows, int cols, int ld, float scale, const float* p,
                                      float* d) {
  const int64_t tiled = tiled_rows(rows, cols);
  for (int64_t r = 0; r < tiled; r += kTileRows)
    softmax_backward_tile(cols, ld, scale, p + r * ld, d + r * ld);
  for (int64_t r = tiled; r < rows; ++r) {
    const float* pr = p + r * ld;
    float* dr = d + r * ld;
    const float dot = lane_sum<float>(cols, [&](int64_t c) { return pr[c] * dr[c]; });
#pragma omp simd
    for (int c = 0; c < cols; ++c) dr[c] = scale * pr[c] * (dr[c] - dot);
    std::fill(dr + cols, dr + ld, 0.0f);
  }
}

}  // namespace vmoe::cpu_loops
