#include "datasets/png_reader.h"

#include <png.h>

#include <filesystem>
#include <fstream>

#include "core/check.h"

namespace vmoe {
namespace {

// Checks the 8-byte signature ourselves: libpng would say only "Not a PNG
// file", and this also separates missing and unreadable files.
void check_signature(const std::string& path) {
  std::error_code ec;
  VMOE_CHECK(std::filesystem::is_regular_file(path, ec), path, ": no such file");
  std::ifstream in(path, std::ios::binary);
  VMOE_CHECK(in.good(), path, ": cannot open");
  png_byte signature[8] = {};
  in.read(reinterpret_cast<char*>(signature), sizeof(signature));
  VMOE_CHECK(in.gcount() == 8 && png_sig_cmp(signature, 0, 8) == 0, path,
             ": not a PNG file (no PNG signature)");
}

void begin_read(const std::string& path, PngImage& image) {
  check_signature(path);
  VMOE_CHECK(png_image_begin_read_from_file(image.get(), path.c_str()) != 0, path,
             ": corrupt PNG header: ", image.get()->message);
}

int channels_of(const png_image& image) {
  return (image.format & PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1;
}

}  // namespace

PngHeader read_png_header(const std::string& path) {
  PngImage image;
  begin_read(path, image);
  return {static_cast<int>(image.get()->height), static_cast<int>(image.get()->width),
          channels_of(*image.get())};
}

Image read_png(const std::string& path) {
  PngImage image;
  begin_read(path, image);
  png_image& png = *image.get();
  const int channels = channels_of(png);
  const bool alpha = (png.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  // 8 bits, no colormap; keep the alpha channel when there is one, so that
  // libpng does not composite onto a background, and strip it below.
  png.format =
      (channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY) | (alpha ? PNG_FORMAT_FLAG_ALPHA : 0U);
  // 16-bit data without gAMA/sRGB: sRGB-encoded (libpng assumes linear).
  png.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
  std::vector<uint8_t> buffer(PNG_IMAGE_SIZE(png));
  VMOE_CHECK(png_image_finish_read(&png, nullptr, buffer.data(), 0, nullptr) != 0, path,
             ": corrupt PNG: ", png.message);
  Image out{static_cast<int>(png.height), static_cast<int>(png.width), channels, {}};
  if (!alpha) {
    out.pixels = std::move(buffer);
    return out;
  }
  const size_t pixels = static_cast<size_t>(out.height) * out.width;
  out.pixels.resize(pixels * channels);
  for (size_t i = 0; i < pixels; ++i) {
    for (int c = 0; c < channels; ++c)
      out.pixels[i * channels + c] = buffer[i * (channels + 1) + c];
  }
  return out;
}

}  // namespace vmoe
