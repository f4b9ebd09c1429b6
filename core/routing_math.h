// Routing bodies shared by the CPU and CUDA backends (__host__ __device__),
// so the GPU makes the CPU's decisions and the CPU tests cover both.
#pragma once

#include <cstdint>

#include "core/hd.h"

namespace vmoe {

// The k largest values of one row, descending; ties go to the lower index
// (strict >), as the routers' tests fix.
VMOE_HD void top_k_row(const float* row, int cols, int k, int32_t* index, float* value) {
  for (int c = 0; c < k; ++c) {
    int best = -1;
    for (int j = 0; j < cols; ++j) {
      bool taken = false;
      for (int p = 0; p < c; ++p) taken |= index[p] == j;
      if (!taken && (best < 0 || row[j] > row[best])) best = j;
    }
    index[c] = best;
    value[c] = row[best];
  }
}

}  // namespace vmoe
