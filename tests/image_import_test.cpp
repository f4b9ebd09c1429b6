// The image pieces of the bring-your-own-data importers: bilinear resize,
// channel conversion and PNG decoding (files written with libpng itself, and
// a 16-bit one byte by byte).
#include <png.h>
#include <zlib.h>

#include <cmath>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "datasets/image_resize.h"
#include "datasets/png_reader.h"
#include "tests/dataset_files.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using testing::error_of;
using ::testing::HasSubstr;
using testing::TempDir;

Image gray(int height, int width, std::vector<uint8_t> pixels) {
  return {height, width, 1, std::move(pixels)};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Writes pixels in `format` (a PNG_FORMAT_* value) with libpng's simplified API.
void write_png(const std::string& path, int height, int width, png_uint_32 format,
               const void* pixels, const void* colormap = nullptr, int colormap_entries = 0) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = format;
  image.colormap_entries = static_cast<png_uint_32>(colormap_entries);
  ASSERT_NE(png_image_write_to_file(&image, path.c_str(), 0, pixels, 0, colormap), 0)
      << image.message;
}

void append_chunk(std::string& png, const char* type, const std::string& data) {
  for (int shift = 24; shift >= 0; shift -= 8)
    png += static_cast<char>((data.size() >> shift) & 255);
  const std::string body = std::string(type, 4) + data;
  png += body;
  const uLong crc =
      crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
  for (int shift = 24; shift >= 0; shift -= 8) png += static_cast<char>((crc >> shift) & 255);
}

// A 16-bit gray PNG assembled by hand: no gAMA/sRGB chunk, which libpng's
// own writer always adds.
std::string gray16_png(int height, int width, const std::vector<uint16_t>& values) {
  std::string ihdr;
  for (int v : {width, height})
    for (int shift = 24; shift >= 0; shift -= 8) ihdr += static_cast<char>((v >> shift) & 255);
  ihdr += std::string("\x10\x00\x00\x00\x00", 5);  // depth 16, gray, deflate, no filter/interlace
  std::string raw;
  for (int y = 0; y < height; ++y) {
    raw += '\0';  // filter type None
    for (int x = 0; x < width; ++x) {
      raw += static_cast<char>(values[y * width + x] >> 8);
      raw += static_cast<char>(values[y * width + x] & 255);
    }
  }
  std::string packed(compressBound(static_cast<uLong>(raw.size())), '\0');
  uLongf packed_size = static_cast<uLongf>(packed.size());
  compress(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
           reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()));
  packed.resize(packed_size);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  append_chunk(png, "IHDR", ihdr);
  append_chunk(png, "IDAT", packed);
  append_chunk(png, "IEND", "");
  return png;
}

TEST(ImageResize, UpscalesTwoByTwoToFourByFour) {
  // Sample positions along each axis: 0 (clamped), 0.25, 0.75, 1 (clamped).
  const Image out = resize_bilinear(gray(2, 2, {0, 100, 200, 60}), 4, 4);
  EXPECT_EQ(out.height, 4);
  EXPECT_EQ(out.width, 4);
  EXPECT_EQ(out.channels, 1);
  EXPECT_THAT(out.pixels, ElementsAre(0, 25, 75, 100,    //
                                      50, 60, 80, 90,    //
                                      150, 130, 90, 70,  //
                                      200, 165, 95, 60));
  // Halves round up: 2.5 -> 3, 7.5 -> 8.
  EXPECT_THAT(resize_bilinear(gray(1, 2, {0, 10}), 1, 4).pixels, ElementsAre(0, 3, 8, 10));
}

TEST(ImageResize, DownscalesFourByFourToTwoByTwo) {
  // Positions 0.5 and 2.5: each output is the mean of a 2x2 block.
  std::vector<uint8_t> src(16);
  for (int i = 0; i < 16; ++i) src[i] = static_cast<uint8_t>(i + 1);
  EXPECT_THAT(resize_bilinear(gray(4, 4, src), 2, 2).pixels, ElementsAre(4, 6, 12, 14));
}

TEST(ImageResize, ChannelsAreIndependentAndSameSizeIsIdentity) {
  const Image rgb{1, 2, 3, {0, 100, 255, 10, 50, 255}};
  EXPECT_THAT(resize_bilinear(rgb, 1, 4).pixels,
              ElementsAre(0, 100, 255, 3, 88, 255, 8, 63, 255, 10, 50, 255));
  Image noise{5, 7, 3, std::vector<uint8_t>(105)};
  for (size_t i = 0; i < noise.pixels.size(); ++i) noise.pixels[i] = (i * 37 + 11) & 255;
  EXPECT_EQ(resize_bilinear(noise, 5, 7).pixels, noise.pixels);
}

// Against the TensorFlow formulation (floor/ceil of the unclamped position,
// edges clamped), written independently of the implementation.
TEST(ImageResize, MatchesHalfPixelReferenceOnOddSizes) {
  Image in{5, 7, 2, std::vector<uint8_t>(70)};
  for (size_t i = 0; i < in.pixels.size(); ++i) in.pixels[i] = (i * 89 + 7) & 255;
  for (const auto& [h, w] : {std::pair{3, 4}, std::pair{8, 9}, std::pair{5, 2}}) {
    const Image out = resize_bilinear(in, h, w);
    for (int y = 0; y < h; ++y) {
      const double sy = (y + 0.5) * in.height / h - 0.5;
      const int y0 = std::max(0, static_cast<int>(std::floor(sy)));
      const int y1 = std::min(in.height - 1, static_cast<int>(std::ceil(sy)));
      const double fy = sy - std::floor(sy);
      for (int x = 0; x < w; ++x) {
        const double sx = (x + 0.5) * in.width / w - 0.5;
        const int x0 = std::max(0, static_cast<int>(std::floor(sx)));
        const int x1 = std::min(in.width - 1, static_cast<int>(std::ceil(sx)));
        const double fx = sx - std::floor(sx);
        for (int c = 0; c < 2; ++c) {
          auto at = [&](int yy, int xx) {
            return static_cast<double>(in.pixels[(yy * in.width + xx) * 2 + c]);
          };
          const double top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
          const double bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
          const double want = top + (bottom - top) * fy;
          EXPECT_NEAR(out.pixels[(y * w + x) * 2 + c], want, 0.5 + 1e-9)
              << h << "x" << w << " at " << y << "," << x << "," << c;
        }
      }
    }
  }
}

TEST(ImageResize, ConvertsChannels) {
  // round(0.299 R + 0.587 G + 0.114 B): 76.245, 149.685, 29.07, 255, 140.75, 28.5.
  const Image rgb{
      1, 6, 3, {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 100, 150, 200, 0, 0, 250}};
  const Image g = convert_channels(rgb, 1);
  EXPECT_EQ(g.channels, 1);
  EXPECT_THAT(g.pixels, ElementsAre(76, 150, 29, 255, 141, 29));
  EXPECT_THAT(convert_channels(gray(1, 2, {7, 200}), 3).pixels,
              ElementsAre(7, 7, 7, 200, 200, 200));
  EXPECT_EQ(convert_channels(rgb, 3).pixels, rgb.pixels);
  // fit_image: channels first, then size.
  const Image fitted = fit_image(Image{1, 2, 3, {255, 0, 0, 0, 0, 255}}, 1, 4, 1);
  EXPECT_THAT(fitted.pixels, ElementsAre(76, 64, 41, 29));  // gray 76, 29 then resized
}

TEST(PngReader, DecodesGrayRgbAndDropsAlpha) {
  TempDir dir;
  const std::vector<uint8_t> g = {0, 1, 2, 127, 128, 255};
  write_png(dir.file("gray.png"), 2, 3, PNG_FORMAT_GRAY, g.data());
  const PngHeader header = read_png_header(dir.file("gray.png"));
  EXPECT_EQ(header.height, 2);
  EXPECT_EQ(header.width, 3);
  EXPECT_EQ(header.channels, 1);
  Image image = read_png(dir.file("gray.png"));
  EXPECT_EQ(image.height, 2);
  EXPECT_EQ(image.width, 3);
  EXPECT_EQ(image.channels, 1);
  EXPECT_EQ(image.pixels, g);

  const std::vector<uint8_t> rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30};
  write_png(dir.file("rgb.png"), 2, 2, PNG_FORMAT_RGB, rgb.data());
  EXPECT_EQ(read_png_header(dir.file("rgb.png")).channels, 3);
  EXPECT_EQ(read_png(dir.file("rgb.png")).pixels, rgb);

  // Alpha is dropped, not composited: colors come back unchanged, even at alpha 0.
  const std::vector<uint8_t> rgba = {10, 20, 30, 255, 40, 50, 60, 128, 70, 80, 90, 0};
  write_png(dir.file("rgba.png"), 1, 3, PNG_FORMAT_RGBA, rgba.data());
  image = read_png(dir.file("rgba.png"));
  EXPECT_EQ(image.channels, 3);
  EXPECT_THAT(image.pixels, ElementsAre(10, 20, 30, 40, 50, 60, 70, 80, 90));
  const std::vector<uint8_t> ga = {200, 255, 100, 0};
  write_png(dir.file("ga.png"), 1, 2, PNG_FORMAT_GA, ga.data());
  image = read_png(dir.file("ga.png"));
  EXPECT_EQ(image.channels, 1);
  EXPECT_THAT(image.pixels, ElementsAre(200, 100));
}

TEST(PngReader, DecodesPaletteAndSixteenBit) {
  TempDir dir;
  const std::vector<uint8_t> palette = {255, 0, 0, 0, 128, 255, 9, 9, 9};
  const std::vector<uint8_t> indices = {2, 0, 1, 1};
  write_png(dir.file("palette.png"), 2, 2, PNG_FORMAT_RGB_COLORMAP, indices.data(), palette.data(),
            3);
  const Image image = read_png(dir.file("palette.png"));
  EXPECT_EQ(image.channels, 3);
  EXPECT_THAT(image.pixels, ElementsAre(9, 9, 9, 255, 0, 0, 0, 128, 255, 0, 128, 255));

  // Without gAMA, 16-bit values are sRGB and just scaled: round(v / 257).
  write_bytes(dir.file("gray16.png"), gray16_png(1, 5, {0, 257 * 10, 0x8080, 65535, 400}));
  EXPECT_THAT(read_png(dir.file("gray16.png")).pixels, ElementsAre(0, 10, 128, 255, 2));

  // libpng's writer marks 16-bit data linear (gAMA 1.0), so reading converts
  // to sRGB: 0 and 1 stay put, linear 0.1 becomes 255 * 0.3492 = 89.04
  // (libpng's tables may round differently by one).
  const std::vector<uint16_t> linear = {0, 0, 0, 65535, 65535, 65535, 6554, 6554, 6554};
  write_png(dir.file("rgb16.png"), 1, 3, PNG_FORMAT_LINEAR_RGB, linear.data());
  const Image rgb16 = read_png(dir.file("rgb16.png"));
  EXPECT_EQ(rgb16.channels, 3);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(rgb16.pixels[c], 0);
    EXPECT_EQ(rgb16.pixels[3 + c], 255);
    EXPECT_NEAR(rgb16.pixels[6 + c], 89, 1);
  }
}

TEST(PngReader, Errors) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { read_png(dir.file("absent.png")); }),
              AllOf(HasSubstr(dir.file("absent.png")), HasSubstr("no such file")));
  write_bytes(dir.file("text.png"), "hello, not an image\n");
  EXPECT_THAT(error_of([&] { read_png_header(dir.file("text.png")); }),
              AllOf(HasSubstr(dir.file("text.png")), HasSubstr("not a PNG file")));
  write_bytes(dir.file("empty.png"), "");
  EXPECT_THAT(error_of([&] { read_png(dir.file("empty.png")); }), HasSubstr("not a PNG file"));

  std::vector<uint8_t> pixels(64 * 64 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = (i * 131) & 255;
  write_png(dir.file("good.png"), 64, 64, PNG_FORMAT_RGB, pixels.data());
  const std::string good = read_bytes(dir.file("good.png"));
  // The signature and a damaged IHDR.
  write_bytes(dir.file("header.png"), good.substr(0, 8) + std::string(30, 'x'));
  EXPECT_THAT(error_of([&] { read_png_header(dir.file("header.png")); }),
              AllOf(HasSubstr(dir.file("header.png")), HasSubstr("corrupt PNG header")));
  // Cut inside the image data: the header reads, decoding fails.
  write_bytes(dir.file("cut.png"), good.substr(0, good.size() / 2));
  EXPECT_EQ(read_png_header(dir.file("cut.png")).width, 64);
  EXPECT_THAT(error_of([&] { read_png(dir.file("cut.png")); }),
              AllOf(HasSubstr(dir.file("cut.png")), HasSubstr("corrupt PNG: ")));
  // A flipped byte in the compressed data: CRC mismatch.
  std::string flipped = good;
  flipped[good.find("IDAT") + 20] ^= 0x55;
  write_bytes(dir.file("flipped.png"), flipped);
  EXPECT_THAT(error_of([&] { read_png(dir.file("flipped.png")); }),
              AllOf(HasSubstr(dir.file("flipped.png")), HasSubstr("corrupt PNG: ")));
}

}  // namespace
}  // namespace vmoe
