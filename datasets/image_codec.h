// Encoded images in memory: JPEG (libjpeg-turbo) and PNG (libpng's png_image
// API) for datasets whose shards hold the encoded bytes. Every function is
// reentrant and thread-safe (no globals, no HDF5): loader threads decode
// concurrently. Errors are vmoe::Error naming the image; libjpeg's default
// handler (which calls exit()) is never used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "datasets/image_resize.h"

namespace vmoe {

enum class ImageFormat { kJpeg, kPng, kUnknown };

// From the magic bytes: FF D8 FF (JPEG SOI + marker) or the 8-byte PNG signature.
ImageFormat detect_image_format(const uint8_t* data, size_t size);

// Baseline JPEG via libjpeg-turbo, quality 1..100; RGB is stored as YCbCr 4:2:0
// (libjpeg's default, what photo datasets hold), gray as one component.
std::vector<uint8_t> encode_jpeg(const Image& image, int quality);

// 8-bit gray or RGB PNG via libpng, in memory.
std::vector<uint8_t> encode_png(const Image& image);

// Size of the stored image, from its header only (cheap: no pixel data decoded).
struct ImageHeader {
  ImageFormat format = ImageFormat::kUnknown;
  int height = 0, width = 0;
  int channels = 0;  // 1 (gray) or 3 (anything else), before any conversion
};
ImageHeader read_image_header(const uint8_t* data, size_t size, const std::string& what);

// Decodes JPEG or PNG bytes (format from the magic) to 8-bit pixels with
// `channels` (1 or 3), converting as convert_channels does (BT.601 luma from
// the decoded RGB; gray replicated). `what` names the image in errors, e.g.
// "image 17 of /data/train-00003.h5".
//
// JPEG: accurate integer IDCT, fancy upsampling (libjpeg's defaults, as PIL).
// CMYK/YCCK files become RGB as TensorFlow's decode_jpeg does (Adobe files
// are inverted CMYK). Truncated or corrupt entropy data is an error: libjpeg
// would only warn and fill the rest with gray. Warnings about metadata only
// (unknown JFIF version or Adobe transform, bad ICC marker) and extraneous
// bytes before a marker (the pixels are complete; some ImageNet files have
// them) are ignored.
// PNG: as read_png (png_reader.h): any type to 8-bit gray or RGB, alpha dropped.
//
// min_height/min_width > 0: a JPEG is decoded at the smallest DCT scale M/8
// in kJpegScales (libjpeg's scale_num/scale_denom) whose output is still at
// least that large, i.e. jpeg_scale_eighths(height, width, min_height,
// min_width); PNG (and 0, 0) decode at full size. A scaled decode averages
// like an area filter, so it is not bit-identical to a full decode; crop it
// with crop_resize_scale_scaled (or use decode_crop_resize_scale, crop_resize.h).
Image decode_image(const uint8_t* data, size_t size, int channels, const std::string& what,
                   int min_height = 0, int min_width = 0);

// The DCT scales M (of M/8) worth decoding at, smallest first. Measured on
// one thread (CPU time, libjpeg-turbo 2.1, 4:2:0, quality 90, textured
// 500x375 and 1024x768 images of ~2 bits/pixel): relative to 8/8, 4/8 takes
// 0.8 of the time, 2/8 0.7, 1/8 0.65 (on smoother images 4/8 takes 0.4);
// 3/8 is no faster than 4/8, 7/8 than 8/8, and 5/8 and 6/8 took 1.2-1.4x
// longer than 8/8 on the textured images (non-SIMD IDCT), so only these:
inline constexpr int kJpegScales[] = {1, 2, 4, 8};

// Output size of a JPEG decoded at scale M/8 (libjpeg's rounding: ceil).
inline int jpeg_scaled_size(int size, int eighths) { return (size * eighths + 7) / 8; }

// The M decode_image picks for a height x width JPEG and the minimum size
// (8 if even the full size is smaller).
int jpeg_scale_eighths(int height, int width, int min_height, int min_width);

}  // namespace vmoe
