// CpuBackend: the mixture-of-experts ops (routing, dispatch, combine,
// auxiliary losses). Semantics: core/backend.h and parallel/README.md.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/cpu/bf16_outputs.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_loops.h"
#include "core/math.h"
#include "core/random.h"
#include "core/routing_math.h"

namespace vmoe {

void CpuBackend::add_normal_noise(int64_t n, float scale, uint64_t key, uint64_t stream,
                                  uint64_t first, const int64_t* step, uint64_t per_step,
                                  float* x) {
  first = first_counter(first, step, per_step);
  // The Philox rounds many lanes at a time; the normals from their words
  // with the scalar logf and cosf, so each value is normal_at's to the bit.
  constexpr int64_t kChunk = 256;
  uint32_t w0[kChunk], w1[kChunk];
  for (int64_t at = 0; at < n; at += kChunk) {
    const int64_t m = std::min(kChunk, n - at);
    cpu_loops::philox_words(m, key, stream, first + static_cast<uint64_t>(at), w0, w1);
    for (int64_t i = 0; i < m; ++i) x[at + i] += scale * normal_from_bits(w0[i], w1[i]);
  }
}

void CpuBackend::top_k(int64_t rows, int cols, int k, const float* x, int32_t* index,
                       float* value) {
  for (int64_t r = 0; r < rows; ++r) top_k_row(x + r * cols, cols, k, index + r * k, value + r * k);
}

void CpuBackend::assign_slots(int64_t groups, int items, int k, int experts, int capacity,
                              bool batch_priority, const int32_t* expert, const float* gate,
                              const float* item_mask, int mask_every, int32_t* slot) {
  std::vector<int> order(static_cast<size_t>(items));
  std::vector<int> count(static_cast<size_t>(experts));
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t first = g * items;
    std::iota(order.begin(), order.end(), 0);
    if (batch_priority) {
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return gate[(first + a) * k] > gate[(first + b) * k];
      });
    }
    std::fill(count.begin(), count.end(), 0);
    for (int c = 0; c < k; ++c) {
      for (int i : order) {
        const int64_t at = (first + i) * k + c;
        if (item_mask != nullptr && item_mask[(first + i) / mask_every] == 0.0f) {
          slot[at] = -1;
          continue;
        }
        const int s = count[static_cast<size_t>(expert[at])]++;
        slot[at] = s < capacity ? s : -1;
      }
    }
  }
}

void CpuBackend::moe_buffer_rows(int64_t groups, int items, int k, int /*experts*/, int capacity,
                                 int item_rows, const int32_t* expert, const int32_t* slot,
                                 int32_t* row) {
  // Expert e owns slot-rows [e, groups, capacity] (in items).
  for (int64_t i = 0; i < groups * items; ++i) {
    for (int c = 0; c < k; ++c) {
      const int s = slot[i * k + c];
      const int64_t base = (int64_t{expert[i * k + c]} * groups + i / items) * capacity;
      row[i * k + c] = s < 0 ? -1 : static_cast<int32_t>((base + s) * item_rows);
    }
  }
}

void CpuBackend::moe_packed_buffer_rows(int64_t groups, int items, int k, int experts, int parts,
                                        int capacity, int item_rows, const int32_t* expert,
                                        const int32_t* slot, int32_t* row, int32_t* live) {
  VMOE_ASSERT(parts > 0 && groups % parts == 0);
  // Kept slots of (expert, group) are 0 .. used - 1 (assign_slots counts up);
  // each group starts past the groups before it in its part of the chunk.
  thread_local std::vector<int64_t> start;
  start.assign(static_cast<size_t>(experts * groups), 0);
  for (int64_t i = 0; i < groups * items; ++i)
    for (int c = 0; c < k; ++c) {
      const int s = slot[i * k + c];
      int64_t& used = start[static_cast<size_t>(expert[i * k + c] * groups + i / items)];
      if (s >= 0) used = std::max<int64_t>(used, s + 1);
    }
  const int64_t per_part = groups / parts;
  for (int64_t e = 0; e < experts; ++e)
    for (int p = 0; p < parts; ++p) {
      const int64_t first = (e * groups + p * per_part) * capacity;
      int64_t at = first;
      for (int64_t g = p * per_part; g < (p + 1) * per_part; ++g) {
        const int64_t used = start[static_cast<size_t>(e * groups + g)];
        start[static_cast<size_t>(e * groups + g)] = at;
        at += used;
      }
      live[e * parts + p] = static_cast<int32_t>((at - first) * item_rows);
    }
  for (int64_t i = 0; i < groups * items; ++i)
    for (int c = 0; c < k; ++c) {
      const int s = slot[i * k + c];
      const int64_t first = start[static_cast<size_t>(expert[i * k + c] * groups + i / items)];
      row[i * k + c] = s < 0 ? -1 : static_cast<int32_t>((first + s) * item_rows);
    }
}

void CpuBackend::moe_dispatch(int64_t items, int k, int item_rows, int dim, const float* x,
                              const int32_t* row, float* buf, uint16_t* buf16) {
  const int64_t n = int64_t{item_rows} * dim;
  for (int64_t i = 0; i < items; ++i)
    for (int c = 0; c < k; ++c) {
      if (row[i * k + c] < 0) continue;
      const int64_t at = int64_t{row[i * k + c]} * dim;
      if (buf != nullptr) std::memcpy(buf + at, x + i * n, static_cast<size_t>(n) * sizeof(float));
      cpu_bf16::write_bf16(n, x + i * n, buf16 != nullptr ? buf16 + at : nullptr);
    }
}

void CpuBackend::moe_combine(int64_t items, int k, int item_rows, int dim, const float* buf,
                             const int32_t* row, const float* gate, float* y) {
  cpu_loops::moe_combine(items, k, item_rows, dim, buf, row, gate, y);
}

void CpuBackend::moe_combine_backward(int64_t items, int k, int item_rows, int dim, const float* dy,
                                      const float* buf, const int32_t* row, const float* gate,
                                      float* dbuf, float* dgate, uint16_t* dbuf16) {
  const int64_t n = int64_t{item_rows} * dim;
  if (dbuf == nullptr) {
    // The bf16 copy alone: the rows go through scratch (the CPU's bf16 is an
    // emulation), so the copy and dgate keep the fp32 path's bits.
    VMOE_CHECK(dbuf16 != nullptr, "moe_combine_backward: dbuf and dbuf16 both null");
    int64_t rows = 0;
    for (int64_t p = 0; p < items * k; ++p)
      rows = std::max<int64_t>(rows, row[p] + int64_t{item_rows});
    combine_scratch_.resize(static_cast<size_t>(rows * dim));
    dbuf = combine_scratch_.data();
  }
  cpu_loops::moe_combine_backward(items, k, item_rows, dim, dy, buf, row, gate, dbuf, dgate);
  if (dbuf16 == nullptr) return;
  for (int64_t p = 0; p < items * k; ++p)
    if (row[p] >= 0)
      cpu_bf16::write_bf16(n, dbuf + int64_t{row[p]} * dim, dbuf16 + int64_t{row[p]} * dim);
}

void CpuBackend::moe_dispatch_backward(int64_t items, int k, int item_rows, int dim,
                                       const float* dbuf, const int32_t* row, float* dx) {
  cpu_loops::moe_dispatch_backward(items, k, item_rows, dim, dbuf, row, dx);
}

namespace {

template <typename T>
void transpose_blocks_of(int64_t outer, int64_t inner, int64_t block, const T* src, T* dst) {
  const size_t bytes = static_cast<size_t>(block) * sizeof(T);
  for (int64_t i = 0; i < inner; ++i)
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(dst + (i * outer + o) * block, src + (o * inner + i) * block, bytes);
}

}  // namespace

void CpuBackend::transpose_blocks(int64_t outer, int64_t inner, int64_t block, const float* src,
                                  float* dst) {
  transpose_blocks_of(outer, inner, block, src, dst);
}

void CpuBackend::transpose_blocks(int64_t outer, int64_t inner, int64_t block, const uint16_t* src,
                                  uint16_t* dst) {
  transpose_blocks_of(outer, inner, block, src, dst);
}

void CpuBackend::top_k_backward(int64_t rows, int cols, int k, const int32_t* index,
                                const float* dvalue, float* d) {
  for (int64_t r = 0; r < rows; ++r)
    for (int c = 0; c < k; ++c) d[r * cols + index[r * k + c]] += dvalue[r * k + c];
}

void CpuBackend::router_aux_losses(const RouterAuxArgs& a) {
  cpu_loops::router_aux_losses(a);
}

void CpuBackend::count_assignments(int64_t items, int k, int experts, const int32_t* expert,
                                   const int32_t* slot, const float* item_mask,
                                   int mask_every, int64_t* counts) {
  for (int64_t i = 0; i < items; ++i) {
    if (item_mask != nullptr && item_mask[i / mask_every] == 0.0f) continue;
    for (int c = 0; c < k; ++c) {
      ++counts[expert[i * k + c]];
      if (slot[i * k + c] < 0) ++counts[experts];
    }
  }
}

}  // namespace vmoe
