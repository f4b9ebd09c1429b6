// The rows of an expert-major buffer [experts, rows, cols] that hold data.
//
// Fixed layout (live null): all of them, one call over every expert (the
// GPU's shapes). Packed layout (live given, host memory; the CPU, see
// parallel/experts.h): each expert's rows are `parts` equal parts, and
// part s of expert e holds live[s * experts + e] rows, then empty ones that
// element-wise work may skip, as the GEMMs do (BatchLevel::live).
#pragma once

#include <cstdint>

namespace vmoe {

struct LiveRows {
  int experts = 1;
  int64_t rows = 0;  // per expert
  const int32_t* live = nullptr;
  int parts = 1;  // per expert (one per source rank of an exchange)

  // Rows per part (the whole of an expert's rows without live).
  int64_t part_rows() const { return rows / parts; }

  // op(experts, first expert, first row, rows per expert) over experts
  // [first, first + count) (default: all): one call over them, or one per
  // part on its live rows.
  template <typename Op>
  void for_each(Op op, int first = 0, int count = -1) const {
    if (count < 0) count = experts - first;
    if (live == nullptr) {
      op(count, first, first * rows, rows);
      return;
    }
    const int64_t part = part_rows();
    for (int e = first; e < first + count; ++e)
      for (int s = 0; s < parts; ++s) op(1, e, e * rows + s * part, int64_t{live[s * experts + e]});
  }
};

}  // namespace vmoe
