// A synthetic JFT-like dataset, for exercising the input pipeline and the
// planner at scale on disk (vmoe_synth): every example is a pure function of
// (spec, index), so any shard can be written by any process in any order.
//
// Labels: 1 + Geometric(0.47) distinct classes per image, capped at 4 (mean
// about 1.9, like JFT's 1.89), long-tailed: class floor(K * u^2) for uniform u.
// Pixels: a two-colour gradient background with mild noise, plus one striped
// rectangle per label in that class's colour, stripe angle and period, so the
// labels are learnable from the pixels. Image sides vary by +-size_jitter
// around the nominal size, so crops and resizes see varied shapes.
#pragma once

#include <cstdint>
#include <vector>

#include "datasets/image_resize.h"

namespace vmoe {

struct SyntheticSpec {
  int64_t num_classes = 0;
  int height = 0, width = 0, channels = 3;  // nominal size
  float size_jitter = 0.25f;                // each side in [s (1 - j), s (1 + j)]
  uint64_t seed = 0;
};

// The sorted, distinct class ids of example `index`.
std::vector<int32_t> synthetic_labels(const SyntheticSpec& spec, int64_t index);

// The pixels of example `index` with labels `labels`.
Image synthetic_image(const SyntheticSpec& spec, int64_t index, const std::vector<int32_t>& labels);

}  // namespace vmoe
