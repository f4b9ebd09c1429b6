#include "checkpoints/position_embedding.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace vmoe {
namespace {

int64_t square_side(int64_t n, const char* which) {
  const int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  VMOE_CHECK(side * side == n, "cannot resize the position embedding: the ", which, " grid has ",
             n, " patches, not a square number");
  return side;
}

}  // namespace

std::vector<float> resize_position_embedding(const std::vector<float>& old, int64_t old_tokens,
                                             int64_t new_tokens, int64_t dim, bool class_token) {
  const int64_t extra = class_token ? 1 : 0;
  const int64_t from = square_side(old_tokens - extra, "checkpoint's");
  const int64_t to = square_side(new_tokens - extra, "model's");
  std::vector<float> out(static_cast<size_t>(new_tokens * dim));
  std::copy(old.begin(), old.begin() + extra * dim, out.begin());
  // Source coordinate and weights of each output row/column.
  auto sample = [&](int64_t i, int64_t& lo, int64_t& hi, float& w) {
    const double src = std::clamp((i + 0.5) * from / static_cast<double>(to) - 0.5, 0.0,
                                  static_cast<double>(from - 1));
    lo = static_cast<int64_t>(std::floor(src));
    hi = std::min(lo + 1, from - 1);
    w = static_cast<float>(src - lo);
  };
  const float* grid = old.data() + extra * dim;
  for (int64_t y = 0; y < to; ++y) {
    int64_t y0, y1;
    float wy;
    sample(y, y0, y1, wy);
    for (int64_t x = 0; x < to; ++x) {
      int64_t x0, x1;
      float wx;
      sample(x, x0, x1, wx);
      float* dst = out.data() + (extra + y * to + x) * dim;
      for (int64_t d = 0; d < dim; ++d) {
        const float top = (1 - wx) * grid[(y0 * from + x0) * dim + d] + wx * grid[(y0 * from + x1) * dim + d];
        const float bottom = (1 - wx) * grid[(y1 * from + x0) * dim + d] + wx * grid[(y1 * from + x1) * dim + d];
        dst[d] = (1 - wy) * top + wy * bottom;
      }
    }
  }
  return out;
}

}  // namespace vmoe
