// Names and layout of the HDF5 dataset schema (see datasets/README.md).
#pragma once

#include <algorithm>
#include <cstdint>

namespace vmoe::schema {

inline constexpr char kImages[] = "/images";          // uint8 [N, H, W, C] or vlen uint8 [N]
inline constexpr char kLabels[] = "/labels";  // int32 [N], uint8 multi-hot [N, K], vlen int32 [N]
inline constexpr char kSuperclass[] = "/superclass";  // optional int32 [N]
inline constexpr char kNumClasses[] = "num_classes";  // int64 file attribute
inline constexpr char kClassNames[] = "class_names";  // string[num_classes] file attribute
// Encoded images: the size the loader produces by default (int64 file attributes).
inline constexpr char kImageHeight[] = "image_height";
inline constexpr char kImageWidth[] = "image_width";
inline constexpr char kImageChannels[] = "image_channels";

// Rows per chunk for rows of `row_bytes`: about 16 KiB per chunk, so a random
// read touches little beyond the rows it needs, and never less than one row.
inline int64_t chunk_rows(int64_t row_bytes) {
  constexpr int64_t kTargetBytes = 16 << 10;
  return std::max<int64_t>(1, kTargetBytes / std::max<int64_t>(1, row_bytes));
}

}  // namespace vmoe::schema
