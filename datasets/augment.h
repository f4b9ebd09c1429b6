// Training-time image augmentation (random crop of the zero-padded image and
// horizontal flip) and pixel scaling. An augmentation is a pure function of
// (seed, stream position), so every rank count produces identical images.
#pragma once

#include <cstdint>

#include "core/math.h"  // scale_pixel, shared with the device's scaling

namespace vmoe {

struct Augmentation {
  // Top-left corner of the crop inside the image padded by crop_padding on
  // every side, each in [0, 2 * crop_padding]; crop_padding means no shift.
  int offset_y = 0, offset_x = 0;
  bool flip = false;  // mirror the crop left-right
};

// The augmentation of global stream position `position`, drawn from
// philox4x32(position, Stream::kAugment, seed): word 0 -> offset_y,
// word 1 -> offset_x, bit 0 of word 2 -> flip (when `flip` is enabled).
Augmentation draw_augmentation(uint64_t seed, uint64_t position, int crop_padding, bool flip);

// Scales image [h, w, c] into out [h, w, c] without augmentation.
void scale_image(const uint8_t* image, int64_t pixels, float* out);

// Writes the crop at (a.offset_y, a.offset_x) of the image zero-padded (pixel
// value 0) by crop_padding, mirrored if a.flip, scaled to [-1, 1].
void augment_image(const uint8_t* image, int h, int w, int c, int crop_padding,
                   const Augmentation& a, float* out);
// The same crop and flip, unscaled (padding is pixel value 0).
void augment_image_u8(const uint8_t* image, int h, int w, int c, int crop_padding,
                      const Augmentation& a, uint8_t* out);

}  // namespace vmoe
