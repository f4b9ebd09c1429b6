// How the CPU backend's ops write their outputs' bfloat16 copies (the CPU's
// emulation of bf16: compute in fp32, round as stored), shared by its GEMMs
// and element-wise ops. Internal to core/cpu.
#pragma once

#include <cstdint>
#include <vector>

#include "core/check.h"
#include "core/math.h"

namespace vmoe::cpu_bf16 {

// y16 = bfloat16(x) when a copy is asked for (the ops' bf16 outputs).
inline void write_bf16(int64_t n, const float* x, uint16_t* y16) {
  if (y16 == nullptr) return;
  for (int64_t i = 0; i < n; ++i) y16[i] = vmoe::to_bf16(x[i]);
}

// An op's output as its bf16 copy alone (no fp32 output asked for): row r
// computed by row_op(r, buffer) into a row buffer, then rounded into y16.
template <typename RowOp>
inline void bf16_rows(int64_t rows, int cols, uint16_t* y16, RowOp row_op) {
  VMOE_ASSERT(y16 != nullptr);
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    row_op(r, row.data());
    write_bf16(cols, row.data(), y16 + r * cols);
  }
}

// An op computed row by row, row_op(r, out): into y (then y16 = its bf16
// copy, if asked for), or with y null into a row buffer, y16 alone.
template <typename RowOp>
inline void by_rows(int64_t rows, int cols, float* y, uint16_t* y16, RowOp row_op) {
  if (y == nullptr) return bf16_rows(rows, cols, y16, row_op);
  for (int64_t r = 0; r < rows; ++r) row_op(r, y + r * cols);
  write_bf16(rows * cols, y, y16);
}

}  // namespace vmoe::cpu_bf16
