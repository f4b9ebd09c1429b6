// Shape conversions the image importers apply to every decoded image, on
// 8-bit channels-last (HWC) pixels: bilinear resizing and channel conversion.
#pragma once

#include <cstdint>
#include <vector>

namespace vmoe {

// An 8-bit image, rows top to bottom, channels last: pixels[(y * width + x) * channels + c].
struct Image {
  int height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

// Bilinear resize with half-pixel centers: output pixel (y, x) samples the
// source at ((y + 0.5) * in_h / out_h - 0.5, (x + 0.5) * in_w / out_w - 0.5),
// clamped to the edge pixels. These are the sample positions of OpenCV's
// INTER_LINEAR and of TensorFlow's tf.image.resize(method="bilinear",
// antialias=False) (resize_bilinear with half_pixel_centers=True); weights are
// computed in double and the result rounded to nearest, so OpenCV's 11-bit
// fixed-point weights may differ by 1. Same size: an exact copy.
//
// No antialiasing: each output pixel mixes at most 2x2 source pixels, so
// shrinking by more than 2x skips source pixels and aliases (moire, jagged
// edges). Shrink large images beforehand with an area filter if that matters.
Image resize_bilinear(const Image& in, int height, int width);

// Converts between 1 (gray) and 3 (RGB) channels: RGB -> gray uses the
// ITU-R BT.601 luma weights, round(0.299 R + 0.587 G + 0.114 B); gray -> RGB
// replicates. Same channel count: unchanged.
Image convert_channels(const Image& in, int channels);

// Channels first, then size (the order matters for rounding, so it is fixed).
Image fit_image(Image in, int height, int width, int channels);

}  // namespace vmoe
