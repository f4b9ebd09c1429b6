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

  // op(experts, first expert, first row, rows per expert): one call over
  // everything, or one per part on its live rows.
  template <typename Op>
  void for_each(Op op) const {
    if (live == nullptr) {
      op(experts, 0, int64_t{0}, rows);
      return;
    }
    const int64_t part = part_rows();
    for (int e = 0; e < experts; ++e)
      for (int s = 0; s < parts; ++s) op(1, e, e * rows + s * part, int64_t{live[s * experts + e]});
  }
};

}  // namespace vmoe
