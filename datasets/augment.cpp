#include "datasets/augment.h"

#include <algorithm>

#include "core/random.h"

namespace vmoe {
namespace {

// Uniform in [0, n) from one 32-bit word (multiply-shift, no division).
int below(uint32_t word, int n) {
  return static_cast<int>((static_cast<uint64_t>(word) * static_cast<uint64_t>(n)) >> 32);
}

}  // namespace

Augmentation draw_augmentation(uint64_t seed, uint64_t position, int crop_padding, bool flip) {
  const Philox4 r = philox4x32(position, static_cast<uint64_t>(Stream::kAugment), seed);
  Augmentation a;
  if (crop_padding > 0) {
    a.offset_y = below(r.v[0], 2 * crop_padding + 1);
    a.offset_x = below(r.v[1], 2 * crop_padding + 1);
  }
  a.flip = flip && (r.v[2] & 1u) != 0;
  return a;
}

void scale_image(const uint8_t* image, int64_t pixels, float* out) {
  for (int64_t i = 0; i < pixels; ++i) out[i] = scale_pixel(image[i]);
}

namespace {

// augment_image with pixel values mapped by `value` (scaling, or none).
template <typename T, typename Value>
void augment(const uint8_t* image, int h, int w, int c, int crop_padding, const Augmentation& a,
             T* out, Value value) {
  const T zero = value(0);
  for (int y = 0; y < h; ++y) {
    const int sy = y + a.offset_y - crop_padding;
    T* row = out + static_cast<int64_t>(y) * w * c;
    if (sy < 0 || sy >= h) {
      std::fill(row, row + static_cast<int64_t>(w) * c, zero);
      continue;
    }
    const uint8_t* src_row = image + static_cast<int64_t>(sy) * w * c;
    for (int x = 0; x < w; ++x) {
      const int sx = (a.flip ? w - 1 - x : x) + a.offset_x - crop_padding;
      T* px = row + static_cast<int64_t>(x) * c;
      if (sx < 0 || sx >= w) {
        std::fill(px, px + c, zero);
      } else {
        for (int k = 0; k < c; ++k) px[k] = value(src_row[static_cast<int64_t>(sx) * c + k]);
      }
    }
  }
}

}  // namespace

void augment_image(const uint8_t* image, int h, int w, int c, int crop_padding,
                   const Augmentation& a, float* out) {
  augment(image, h, w, c, crop_padding, a, out, scale_pixel);
}

void augment_image_u8(const uint8_t* image, int h, int w, int c, int crop_padding,
                      const Augmentation& a, uint8_t* out) {
  augment(image, h, w, c, crop_padding, a, out, [](uint8_t x) { return x; });
}

}  // namespace vmoe
