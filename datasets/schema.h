// Names and layout of the HDF5 dataset schema (see datasets/README.md).
#pragma once

#include <algorithm>
#include <cstdint>

namespace vmoe::schema {

inline constexpr char kImages[] = "/images";          // uint8 [N, H, W, C]
inline constexpr char kLabels[] = "/labels";          // int32 [N] or uint8 multi-hot [N, K]
inline constexpr char kSuperclass[] = "/superclass";  // optional int32 [N]
inline constexpr char kNumClasses[] = "num_classes";  // int64 file attribute
inline constexpr char kClassNames[] = "class_names";  // string[num_classes] file attribute

// Rows per chunk for rows of `row_bytes`: about 16 KiB per chunk, so a random
// read touches little beyond the rows it needs, and never less than one row.
inline int64_t chunk_rows(int64_t row_bytes) {
  constexpr int64_t kTargetBytes = 16 << 10;
  return std::max<int64_t>(1, kTargetBytes / std::max<int64_t>(1, row_bytes));
}

}  // namespace vmoe::schema
