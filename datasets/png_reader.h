// PNG decoding with libpng's simplified API (png_image, libpng >= 1.6).
//
// Every PNG color type and bit depth is accepted and decoded to 8 bits per
// channel: gray and gray+alpha to 1 channel, RGB, RGBA and palette to 3.
// Alpha is dropped, not composited (what PIL's convert("RGB") and
// tf.io.decode_png(channels=3) do). libpng converts to sRGB: 8-bit files
// without a gAMA chunk (or with an sRGB-like one) pass through unchanged, and
// 16-bit files without one are taken as sRGB too, i.e. scaled to 8 bits;
// files whose gAMA says otherwise (e.g. 1.0, linear) are gamma-corrected.
#pragma once

#include <png.h>

#include <string>

#include "datasets/image_resize.h"

namespace vmoe {

// libpng's simplified-API state, freed on every path (png_image_free is a no-op once freed).
class PngImage {
 public:
  PngImage() { image_.version = PNG_IMAGE_VERSION; }
  ~PngImage() { png_image_free(&image_); }
  PngImage(const PngImage&) = delete;
  PngImage& operator=(const PngImage&) = delete;
  png_image* get() { return &image_; }

 private:
  png_image image_{};
};


struct PngHeader {
  int height = 0, width = 0;
  int channels = 0;  // what read_png returns: 1 (gray) or 3 (color)
};

// Reads only the header. Errors name the file: missing, not a PNG, corrupt header.
PngHeader read_png_header(const std::string& path);

// Decodes the whole image; errors name the file and say what is wrong.
Image read_png(const std::string& path);

}  // namespace vmoe
