// Training and evaluation crops for datasets of encoded images of any size:
// the crop rectangle is drawn (inception_crop) or computed (central_crop) in
// source pixels, then crop_resize_scale turns it into the model's input in
// one pass. Pure functions of their arguments, safe on any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "datasets/image_codec.h"
#include "datasets/image_resize.h"

namespace vmoe {

// A crop rectangle in source pixel coordinates, plus a horizontal flip.
struct CropRect {
  int y = 0, x = 0, height = 0, width = 0;
  bool flip = false;
};

// Inception-style random crop (TF's sample_distorted_bounding_box with the
// whole image as the box, as in big_vision's inception_crop), with the
// distribution of torchvision's RandomResizedCrop: area fraction uniform in
// [min_area, 1], aspect ratio width/height log-uniform in [3/4, 4/3]; the
// rounded size must fit the image and still satisfy both bounds exactly, else
// the attempt is redrawn; up to 10 attempts. A size that fits is placed
// uniformly. If none fits (e.g. very elongated or tiny images) the whole image
// is the crop, as TF falls back to the whole bounding box. Flip with
// probability 1/2 if `flip`.
//
// Randomness: attempt a (0..9) uses the four words of
// philox4x32(position, kAugment + (a << 32), seed) (area, aspect, y, x), the
// flip bit 0 of word 0 of philox4x32(position, kAugment + (10 << 32), seed);
// so a crop depends on (seed, position) only. Attempt 0's words are those of
// draw_augmentation (augment.h); the two are alternatives, never combined.
CropRect inception_crop(uint64_t seed, uint64_t position, int height, int width,
                        float min_area, bool flip);

// Evaluation: resize by r so that the image covers out_h / crop_fraction x
// out_w / crop_fraction (for a square output: the shorter side becomes
// out / crop_fraction, e.g. 256 for 224 at 0.875), then take the central
// out_h x out_w crop; returned as the source rectangle (size out / r, rounded,
// at most the image; offset floor((size - crop) / 2)) so that it is one
// crop_resize_scale. No flip.
CropRect central_crop(int height, int width, int out_h, int out_w, float crop_fraction);

// Crops `rect` (inside the image) from `image`, resizes it bilinearly to
// out_h x out_w with half-pixel centers and edges clamped to the crop (the
// sample positions of resize_bilinear applied to the cropped image, but
// without rounding to 8 bits), mirrors it if rect.flip and writes
// value / 127.5 - 1 (scale_pixel) into out [out_h, out_w, channels]. A crop of
// the image's own size with out = crop size is exactly scale_pixel per sample.
void crop_resize_scale(const Image& image, const CropRect& rect, int out_h, int out_w, float* out);

// The same crop and resize, rounded to 8 bits instead of scaled (the images
// a GPU run copies to the device, which scales them there: a quarter of the
// bytes). A crop of the image's own size with out = crop size is the crop's
// pixels exactly.
void crop_resize_u8(const Image& image, const CropRect& rect, int out_h, int out_w, uint8_t* out);

// The same for a JPEG decoded at DCT scale eighths/8 (decode_image with
// min_height/min_width): `rect` stays in the full-size image's coordinates
// and maps through the DCT geometry (full-size pixel center u lies at
// (u + 0.5) * eighths / 8 - 0.5), so the crop covers the same part of the
// picture as on a full decode. eighths = 8 is crop_resize_scale.
void crop_resize_scale_scaled(const Image& image, int eighths, const CropRect& rect, int out_h,
                              int out_w, float* out);

// The smallest DCT scale M/8 in kJpegScales (image_codec.h) at which `rect`
// still spans at least out_h x out_w pixels (8 if the crop is smaller), so a
// scaled decode never upsamples where the full one would not.
int crop_scale_eighths(const CropRect& rect, int out_h, int out_w);

// A loader thread's whole per-image step: reads the header, asks
// crop(height, width) for the rectangle in full-size pixels (e.g. a lambda
// calling inception_crop or central_crop), decodes and writes
// crop_resize_scale's output [out_h, out_w, channels] into out. With
// dct_scaling, JPEGs are decoded at crop_scale_eighths' scale (as picked by
// decode_image) and cropped with crop_resize_scale_scaled: the same part of
// the picture, decoded 1.2-2.5x faster when the crop is >= 2x the output
// (see kJpegScales), but not bit-identical to the full decode: the smaller
// IDCT averages like an area filter. Returns the rectangle used.
template <typename CropFn>
CropRect decode_crop_resize_scale(const uint8_t* data, size_t size, int channels,
                                  const std::string& what, CropFn&& crop, int out_h, int out_w,
                                  bool dct_scaling, float* out) {
  const ImageHeader header = read_image_header(data, size, what);
  const CropRect rect = crop(header.height, header.width);
  int eighths = 8, min_h = 0, min_w = 0;
  if (dct_scaling && header.format == ImageFormat::kJpeg) {
    const int m = crop_scale_eighths(rect, out_h, out_w);
    min_h = jpeg_scaled_size(header.height, m);
    min_w = jpeg_scaled_size(header.width, m);
    // What decode_image will pick (may be smaller than m for tiny images: same size).
    eighths = jpeg_scale_eighths(header.height, header.width, min_h, min_w);
  }
  const Image image = decode_image(data, size, channels, what, min_h, min_w);
  crop_resize_scale_scaled(image, eighths, rect, out_h, out_w, out);
  return rect;
}

// Mixup of two scaled images: out = lambda * a + (1 - lambda) * b over n
// floats (out may alias a or b).
void mix_images(const float* a, const float* b, float lambda, int64_t n, float* out);

// Mixup's lambda for global batch `step`: a Beta(alpha, alpha) draw (alpha >
// 0) in [0, 1] as X / (X + Y) with X, Y ~ Gamma(alpha) (Marsaglia-Tsang, with
// Gamma(a) = Gamma(a + 1) U^(1/a) for a < 1, in log space so small alpha
// cannot underflow). Its words come from philox4x32(step, Stream::kMixup +
// (block << 32), seed), block = 0, 1, ...: deterministic in (seed, step).
float mixup_lambda(uint64_t seed, int64_t step, float alpha);

}  // namespace vmoe
