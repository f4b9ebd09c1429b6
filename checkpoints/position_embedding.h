// Resizing a learned position embedding to another patch grid (fine-tuning at
// another resolution), as ViT does: the grid part is resampled bilinearly
// (half-pixel centres, edges clamped); a class-token row is kept as it is.
#pragma once

#include <cstdint>
#include <vector>

namespace vmoe {

// old: [old_tokens, dim] with a leading class-token row when class_token;
// grids are square. Returns [new_tokens, dim].
std::vector<float> resize_position_embedding(const std::vector<float>& old, int64_t old_tokens,
                                             int64_t new_tokens, int64_t dim, bool class_token);

}  // namespace vmoe
