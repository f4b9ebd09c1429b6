// image_codec (JPEG/PNG in memory) and crop_resize (inception and central
// crops, crop + resize + scale, mixup): round trips, every kind of bad input,
// crop geometry on hand-computed cases and over many random draws.
#include <cstdio>

#include <jpeglib.h>

#include <cmath>
#include <set>
#include <thread>
#include <tuple>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/random.h"
#include "datasets/augment.h"
#include "datasets/crop_resize.h"
#include "datasets/image_codec.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::error_of;

// A smooth picture with a little texture: what JPEG is made for.
Image test_image(int height, int width, int channels, uint64_t seed = 1) {
  RandomStream rng(seed, Stream::kTest);
  Image im{height, width, channels, std::vector<uint8_t>(size_t{1} * height * width * channels)};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        const double v = 128 + 80 * std::sin(0.11 * x + 0.7 * c) * std::cos(0.07 * y) +
                         20 * std::sin(0.5 * (x + y)) + 3 * rng.normal();
        im.pixels[(size_t{1} * y * width + x) * channels + c] =
            static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return im;
}

double psnr(const Image& a, const Image& b) {
  double se = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const double d = static_cast<double>(a.pixels[i]) - b.pixels[i];
    se += d * d;
  }
  return 10 * std::log10(255.0 * 255.0 / (se / a.pixels.size()));
}

Image decode(const std::vector<uint8_t>& bytes, int channels, int min_h = 0, int min_w = 0) {
  return decode_image(bytes.data(), bytes.size(), channels, "test image", min_h, min_w);
}

TEST(ImageCodec, DetectsFormatFromMagic) {
  const Image im = test_image(4, 5, 3);
  const auto jpeg = encode_jpeg(im, 90), png = encode_png(im);
  EXPECT_EQ(detect_image_format(jpeg.data(), jpeg.size()), ImageFormat::kJpeg);
  EXPECT_EQ(detect_image_format(png.data(), png.size()), ImageFormat::kPng);
  EXPECT_EQ(detect_image_format(png.data(), 7), ImageFormat::kUnknown);
  EXPECT_EQ(detect_image_format(jpeg.data(), 2), ImageFormat::kUnknown);
  EXPECT_EQ(detect_image_format(nullptr, 0), ImageFormat::kUnknown);
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 0, 0};
  EXPECT_EQ(detect_image_format(gif, sizeof(gif)), ImageFormat::kUnknown);
}

TEST(ImageCodec, PngRoundTripIsExact) {
  for (int channels : {1, 3}) {
    const Image im = test_image(13, 17, channels);
    const auto bytes = encode_png(im);
    const Image out = decode(bytes, channels);
    EXPECT_EQ(out.height, 13);
    EXPECT_EQ(out.width, 17);
    EXPECT_EQ(out.channels, channels);
    EXPECT_EQ(out.pixels, im.pixels) << channels << " channels";
    const ImageHeader h = read_image_header(bytes.data(), bytes.size(), "x");
    EXPECT_EQ(std::tie(h.height, h.width, h.channels), std::make_tuple(13, 17, channels));
    EXPECT_EQ(h.format, ImageFormat::kPng);
  }
}

TEST(ImageCodec, JpegRoundTripAtQuality95) {
  for (int channels : {1, 3}) {
    const Image im = test_image(48, 64, channels);
    const auto bytes = encode_jpeg(im, 95);
    const Image out = decode(bytes, channels);
    ASSERT_EQ(std::tie(out.height, out.width, out.channels), std::tie(im.height, im.width, channels));
    EXPECT_GT(psnr(im, out), 35.0) << channels << " channels";
    const ImageHeader h = read_image_header(bytes.data(), bytes.size(), "x");
    EXPECT_EQ(std::tie(h.height, h.width, h.channels), std::make_tuple(48, 64, channels));
    EXPECT_EQ(h.format, ImageFormat::kJpeg);
  }
  // Lower quality: smaller file, still the same picture.
  const Image im = test_image(48, 64, 3);
  EXPECT_LT(encode_jpeg(im, 30).size(), encode_jpeg(im, 95).size());
  EXPECT_GT(psnr(im, decode(encode_jpeg(im, 30), 3)), 25.0);
}

TEST(ImageCodec, ConvertsChannelsAsConvertChannels) {
  const Image rgb = test_image(9, 11, 3), gray = test_image(9, 11, 1);
  // PNG is lossless: exactly convert_channels of the original.
  EXPECT_EQ(decode(encode_png(rgb), 1).pixels, convert_channels(rgb, 1).pixels);
  EXPECT_EQ(decode(encode_png(gray), 3).pixels, convert_channels(gray, 3).pixels);
  // JPEG: the conversion of what the file decodes to at its own channel count.
  const auto jpeg_rgb = encode_jpeg(rgb, 90), jpeg_gray = encode_jpeg(gray, 90);
  EXPECT_EQ(decode(jpeg_rgb, 1).pixels, convert_channels(decode(jpeg_rgb, 3), 1).pixels);
  EXPECT_EQ(decode(jpeg_gray, 3).pixels, convert_channels(decode(jpeg_gray, 1), 3).pixels);
  EXPECT_THAT(error_of([&] { decode(jpeg_rgb, 2); }), HasSubstr("1 or 3 channels"));
}

TEST(ImageCodec, CmykJpegBecomesRgb) {
  // libjpeg writes CMYK with an Adobe marker, i.e. inverted: RGB = K * CMY / 255.
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buffer, &size);
  c.image_width = 16;
  c.image_height = 16;
  c.input_components = 4;
  c.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  jpeg_start_compress(&c, TRUE);
  std::vector<uint8_t> row(16 * 4);
  for (int x = 0; x < 16; ++x) {
    const uint8_t px[4] = {255, 128, 0, 200};
    std::copy(px, px + 4, row.begin() + 4 * x);
  }
  while (c.next_scanline < c.image_height) {
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  const std::vector<uint8_t> bytes(buffer, buffer + size);
  jpeg_destroy_compress(&c);
  free(buffer);
  const Image out = decode(bytes, 3);
  ASSERT_EQ(out.channels, 3);
  const int want[3] = {200 * 255 / 255, 200 * 128 / 255, 0};
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(out.pixels[k], want[k], 2) << k;
}

TEST(ImageCodec, BadDataIsAnErrorNamingTheImage) {
  const Image im = test_image(32, 40, 3);
  const auto jpeg = encode_jpeg(im, 90), png = encode_png(im);
  const std::string what = "image 17 of /data/train-00003.h5";
  const auto error = [&](std::vector<uint8_t> bytes) {
    return error_of([&] { decode_image(bytes.data(), bytes.size(), 3, what); });
  };
  const auto cut = [](const std::vector<uint8_t>& b, size_t n) {
    return std::vector<uint8_t>(b.begin(), b.begin() + n);
  };
  // Truncated anywhere: header, scan data, just the EOI marker missing.
  for (size_t n : {size_t{3}, size_t{20}, jpeg.size() / 2, jpeg.size() - 2}) {
    EXPECT_THAT(error(cut(jpeg, n)), AllOf(HasSubstr(what), HasSubstr("corrupt JPEG"))) << n;
  }
  for (size_t n : {size_t{8}, size_t{30}, png.size() / 2, png.size() - 12, png.size() - 1}) {
    EXPECT_THAT(error(cut(png, n)), AllOf(HasSubstr(what), HasSubstr("corrupt PNG"))) << n;
  }
  // Corrupt entropy data: a marker in the middle of the scan (after SOS, FF DA).
  size_t sos = 0;
  for (size_t i = 0; i + 1 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xff && jpeg[i + 1] == 0xda) sos = i;
  }
  ASSERT_GT(sos, 0u);
  std::vector<uint8_t> bad = jpeg;
  const size_t mid = (sos + jpeg.size()) / 2;
  bad[mid] = 0xff;
  bad[mid + 1] = 0xc0;
  EXPECT_THAT(error(bad), AllOf(HasSubstr(what), HasSubstr("corrupt JPEG")));
  // Corrupt header: the bytes after SOI.
  bad = jpeg;
  std::fill(bad.begin() + 3, bad.begin() + 40, 0x00);
  EXPECT_THAT(error(bad), AllOf(HasSubstr(what), HasSubstr("corrupt JPEG")));
  // A flipped byte in PNG pixel data fails its CRC.
  bad = png;
  bad[png.size() - 20] ^= 0x55;
  EXPECT_THAT(error(bad), AllOf(HasSubstr(what), HasSubstr("corrupt PNG")));
  // Unknown formats and nothing at all.
  EXPECT_THAT(error({'G', 'I', 'F', '8', '9', 'a', 1, 2, 3}),
              AllOf(HasSubstr(what), HasSubstr("unknown image format"), HasSubstr("47 49 46")));
  EXPECT_THAT(error({}), AllOf(HasSubstr(what), HasSubstr("unknown image format")));
  EXPECT_THAT(error_of([&] { read_image_header(jpeg.data(), 10, what); }), HasSubstr(what));
  // Garbage before EOI only warns in libjpeg (the pixels are complete): accepted.
  std::vector<uint8_t> extra = jpeg;
  extra.insert(extra.end() - 2, {0x12, 0x34, 0x56});
  EXPECT_EQ(decode(extra, 3).pixels, decode(jpeg, 3).pixels);
  // And the process is still fine: a good image decodes after all that.
  EXPECT_EQ(decode(jpeg, 3).height, 32);
  EXPECT_THAT(error_of([&] { encode_jpeg(im, 0); }), HasSubstr("quality"));
  EXPECT_THAT(error_of([&] { encode_png(Image{2, 2, 3, {1, 2}}); }), HasSubstr("encode_png"));
}

TEST(ImageCodec, DecodesConcurrently) {
  const Image im = test_image(64, 48, 3);
  const auto jpeg = encode_jpeg(im, 90), png = encode_png(im);
  const Image want = decode(jpeg, 3);
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        if (decode(jpeg, 3).pixels != want.pixels) ++failures[t];
        if (decode(png, 3).pixels != im.pixels) ++failures[t];
        if (error_of([&] { decode_image(jpeg.data(), jpeg.size() / 2, 3, "half"); }).empty())
          ++failures[t];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

TEST(ImageCodec, DctScalingPicksTheSmallestScaleThatIsLargeEnough) {
  const Image im = test_image(100, 60, 3);
  const auto jpeg = encode_jpeg(im, 90);
  EXPECT_EQ(jpeg_scale_eighths(100, 60, 0, 0), 8);
  EXPECT_EQ(jpeg_scale_eighths(100, 60, 50, 0), 4);   // 100 * 4/8 = 50
  EXPECT_EQ(jpeg_scale_eighths(100, 60, 51, 0), 8);   // 5/8..7/8 are not used (slower)
  EXPECT_EQ(jpeg_scale_eighths(100, 60, 10, 30), 4);  // width decides
  EXPECT_EQ(jpeg_scale_eighths(100, 60, 500, 0), 8);  // never upscales
  EXPECT_EQ(jpeg_scale_eighths(100, 60, 30, 0), 4);   // 3/8 is not used either
  EXPECT_EQ(jpeg_scale_eighths(100, 60, 25, 0), 2);
  EXPECT_EQ(jpeg_scale_eighths(100, 60, 13, 8), 1);
  const Image half = decode(jpeg, 3, 50, 30);
  EXPECT_EQ(std::tie(half.height, half.width), std::make_tuple(50, 30));
  const Image odd = decode(encode_jpeg(test_image(101, 61, 3), 90), 3, 26, 0);
  EXPECT_EQ(std::tie(odd.height, odd.width), std::make_tuple(26, 16));  // ceil(25.25), ceil(15.25)
  // PNG ignores the minimum size.
  EXPECT_EQ(decode(encode_png(im), 3, 50, 30).height, 100);
}

TEST(InceptionCrop, DeterministicInSeedAndPosition) {
  const auto key = [](const CropRect& r) { return std::tie(r.y, r.x, r.height, r.width, r.flip); };
  for (uint64_t p = 0; p < 50; ++p) {
    const CropRect a = inception_crop(7, p, 300, 400, 0.08f, true);
    const CropRect b = inception_crop(7, p, 300, 400, 0.08f, true);
    EXPECT_EQ(key(a), key(b));
  }
  std::set<std::tuple<int, int, int, int, bool>> seen, other_seed;
  for (uint64_t p = 0; p < 50; ++p) {
    seen.insert(key(inception_crop(7, p, 300, 400, 0.08f, true)));
    other_seed.insert(key(inception_crop(8, p, 300, 400, 0.08f, true)));
  }
  EXPECT_GE(seen.size(), 49u);  // different positions: different crops
  EXPECT_NE(seen, other_seed);
}

TEST(InceptionCrop, StaysWithinBoundsAndInsideTheImage) {
  const std::vector<std::pair<int, int>> sizes = {{224, 224}, {375, 500}, {500, 333}, {17, 9},
                                                  {32, 32},   {5, 7},     {1000, 80}};
  for (float min_area : {0.05f, 0.08f, 0.5f, 1.0f}) {
    for (auto [h, w] : sizes) {
      int fallbacks = 0, flips = 0;
      const int n = 2000;
      for (int p = 0; p < n; ++p) {
        const CropRect r = inception_crop(3, p, h, w, min_area, true);
        ASSERT_TRUE(r.y >= 0 && r.x >= 0 && r.height >= 1 && r.width >= 1 &&
                    r.y + r.height <= h && r.x + r.width <= w)
            << h << "x" << w << " p=" << p;
        flips += r.flip;
        if (r.height == h && r.width == w && (4 * w < 3 * h || 4 * h < 3 * w)) {
          ++fallbacks;  // the whole image, outside the aspect range
          continue;
        }
        EXPECT_GE(double(r.height) * r.width, double(min_area) * h * w) << h << "x" << w;
        EXPECT_TRUE(4 * r.width >= 3 * r.height && 4 * r.height >= 3 * r.width)
            << r.height << "x" << r.width << " of " << h << "x" << w;
      }
      EXPECT_NEAR(flips, n / 2, 150) << h << "x" << w;
      if (min_area < 0.9f && h >= 32 && w >= 32 && 3 * h <= 4 * w && 3 * w <= 4 * h) {
        EXPECT_EQ(fallbacks, 0) << h << "x" << w;
      }
    }
  }
  // Area fractions cover [min_area, 1]; the mean is below (1 + min_area) / 2
  // because large areas with aspect != 1 do not fit and are redrawn.
  double sum = 0, lo = 1, hi = 0;
  for (int p = 0; p < 4000; ++p) {
    const CropRect r = inception_crop(5, p, 1000, 1000, 0.08f, false);
    EXPECT_FALSE(r.flip);
    const double f = double(r.height) * r.width / 1e6;
    sum += f;
    lo = std::min(lo, f);
    hi = std::max(hi, f);
  }
  EXPECT_NEAR(sum / 4000, 0.48, 0.03);
  EXPECT_LT(lo, 0.085);
  EXPECT_GT(hi, 0.97);
}

TEST(InceptionCrop, FallsBackToTheWholeImage) {
  for (auto [h, w, min_area] : {std::make_tuple(1, 100, 0.08f), std::make_tuple(100, 2, 0.08f),
                                std::make_tuple(1, 1, 0.08f), std::make_tuple(3, 3, 0.9f)}) {
    for (uint64_t p = 0; p < 100; ++p) {
      const CropRect r = inception_crop(11, p, h, w, min_area, false);
      EXPECT_EQ(std::tie(r.y, r.x, r.height, r.width), std::make_tuple(0, 0, h, w))
          << h << "x" << w << " p=" << p;
    }
  }
  EXPECT_THAT(error_of([] { inception_crop(1, 0, 10, 10, 0.0f, false); }), HasSubstr("min_area"));
  EXPECT_THAT(error_of([] { inception_crop(1, 0, 0, 10, 0.5f, false); }), HasSubstr("empty"));
}

TEST(CentralCrop, HandComputedGeometry) {
  const auto rect = [](int h, int w, int oh, int ow, float f) {
    const CropRect r = central_crop(h, w, oh, ow, f);
    EXPECT_FALSE(r.flip);
    return std::make_tuple(r.y, r.x, r.height, r.width);
  };
  // 256 -> 256 (r = 1), central 224.
  EXPECT_EQ(rect(256, 256, 224, 224, 0.875f), std::make_tuple(16, 16, 224, 224));
  // 375x500: shorter side 375 -> 256, so 224 of 256 is 328.125 -> 328 source pixels.
  EXPECT_EQ(rect(375, 500, 224, 224, 0.875f), std::make_tuple(23, 86, 328, 328));
  EXPECT_EQ(rect(500, 375, 224, 224, 0.875f), std::make_tuple(86, 23, 328, 328));
  // crop_fraction 1: the central square of the shorter side.
  EXPECT_EQ(rect(300, 400, 224, 224, 1.0f), std::make_tuple(0, 50, 300, 300));
  // Non-square output 100x200 of a 400x400 image at 0.5: r = max(100/200, 200/200) = 1.
  EXPECT_EQ(rect(400, 400, 100, 200, 0.5f), std::make_tuple(150, 100, 100, 200));
  // Upsampling a small image: 64x48 -> shorter side 256, crop 224: 42x42 source pixels.
  EXPECT_EQ(rect(64, 48, 224, 224, 0.875f), std::make_tuple(11, 3, 42, 42));
}

std::vector<float> crop_resize(const Image& im, CropRect r, int oh, int ow) {
  std::vector<float> out(size_t{1} * oh * ow * im.channels, -7.0f);
  crop_resize_scale(im, r, oh, ow, out.data());
  return out;
}

TEST(CropResizeScale, IdentityIsScalePixelAndFlipMirrors) {
  const Image im = test_image(5, 7, 3, 42);
  const std::vector<float> out = crop_resize(im, {0, 0, 5, 7, false}, 5, 7);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], scale_pixel(im.pixels[i])) << i;
  // A crop without resize: the sub-image, exactly.
  const std::vector<float> sub = crop_resize(im, {1, 2, 3, 4, false}, 3, 4);
  const std::vector<float> flipped = crop_resize(im, {1, 2, 3, 4, true}, 3, 4);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 4; ++x) {
      for (int c = 0; c < 3; ++c) {
        const float want = scale_pixel(im.pixels[((y + 1) * 7 + x + 2) * 3 + c]);
        EXPECT_EQ(sub[(y * 4 + x) * 3 + c], want);
        EXPECT_EQ(flipped[(y * 4 + (3 - x)) * 3 + c], want);
      }
    }
  }
}

TEST(CropResizeScale, HandComputedTinyImage) {
  const Image row{1, 4, 1, {0, 40, 80, 120}};
  const auto s = [](float v) { return v / 127.5f - 1.0f; };
  // Crop [40, 80] to 4: sample positions -0.25, 0.25, 0.75, 1.25 clamped to [0, 1].
  EXPECT_THAT(crop_resize(row, {0, 1, 1, 2, false}, 1, 4),
              ::testing::Pointwise(::testing::FloatNear(1e-6f),
                                   std::vector<float>{s(40), s(50), s(70), s(80)}));
  EXPECT_THAT(crop_resize(row, {0, 1, 1, 2, true}, 1, 4),
              ::testing::Pointwise(::testing::FloatNear(1e-6f),
                                   std::vector<float>{s(80), s(70), s(50), s(40)}));
  // Whole row to 2: positions 0.5 and 2.5.
  EXPECT_THAT(crop_resize(row, {0, 0, 1, 4, false}, 1, 2),
              ::testing::Pointwise(::testing::FloatNear(1e-6f), std::vector<float>{s(20), s(100)}));
  // 2x2 RGB-free gray square to 3x1: vertical positions -1/6, 0.5, 7/6 -> clamped; x always 0.5.
  const Image sq{2, 2, 1, {0, 60, 120, 240}};
  EXPECT_THAT(crop_resize(sq, {0, 0, 2, 2, false}, 3, 1),
              ::testing::Pointwise(::testing::FloatNear(1e-5f),
                                   std::vector<float>{s(30), s(105), s(180)}));
}

TEST(CropResizeScale, AgreesWithResizeBilinearOfTheCrop) {
  const Image im = test_image(40, 50, 3, 9);
  for (CropRect r : {CropRect{3, 5, 30, 20, false}, CropRect{0, 0, 40, 50, false},
                     CropRect{10, 7, 9, 13, false}}) {
    Image crop{r.height, r.width, 3, {}};
    for (int y = 0; y < r.height; ++y) {
      const uint8_t* src = im.pixels.data() + ((r.y + y) * 50 + r.x) * 3;
      crop.pixels.insert(crop.pixels.end(), src, src + r.width * 3);
    }
    for (auto [oh, ow] : {std::pair{16, 16}, std::pair{37, 23}}) {
      const Image want = resize_bilinear(crop, oh, ow);  // rounded to 8 bits
      const std::vector<float> got = crop_resize(im, r, oh, ow);
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], scale_pixel(want.pixels[i]), 0.51f / 127.5f) << i;
      }
    }
  }
  EXPECT_THAT(error_of([&] { crop_resize(im, {35, 0, 10, 10, false}, 4, 4); }),
              HasSubstr("not inside"));
}

// 8-bit output (GPU batches): the float output before scaling, rounded; an
// unresized crop is the crop's pixels exactly, flipped or not.
TEST(CropResizeScale, Uint8OutputIsTheRoundedResize) {
  const Image im = test_image(40, 50, 3, 11);
  for (CropRect r : {CropRect{3, 5, 30, 20, false}, CropRect{10, 7, 9, 13, true},
                     CropRect{2, 4, 16, 16, true}}) {
    for (auto [oh, ow] : {std::pair{16, 16}, std::pair{37, 23}}) {
      const std::vector<float> f = crop_resize(im, r, oh, ow);
      std::vector<uint8_t> u(f.size());
      crop_resize_u8(im, r, oh, ow, u.data());
      for (size_t i = 0; i < u.size(); ++i) {
        const float level = (f[i] + 1.0f) * 127.5f;  // back to [0, 255]
        ASSERT_NEAR(u[i], level, 0.5f + 1e-3f) << i;
        if (r.height == oh && r.width == ow) {
          ASSERT_EQ(scale_pixel(u[i]), f[i]) << i;
        }
      }
    }
  }
}

TEST(CropResizeScale, DctScaledDecodeCoversTheSameCrop) {
  // On a linear ramp bilinear sampling is exact, and a DCT-scaled decode at
  // M/8 holds the ramp at the scaled pixel centers: both paths must agree.
  const int h = 64, w = 96;
  const auto ramp = [](double y, double x) { return 2 * x + y + 10; };
  Image full{h, w, 1, std::vector<uint8_t>(h * w)};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) full.pixels[y * w + x] = static_cast<uint8_t>(ramp(y, x));
  Image half{h / 2, w / 2, 1, std::vector<uint8_t>(h * w / 4)};
  for (int y = 0; y < h / 2; ++y)  // scaled pixel i covers full pixels 2i, 2i+1: center 2i + 0.5
    for (int x = 0; x < w / 2; ++x)
      half.pixels[y * w / 2 + x] = static_cast<uint8_t>(std::lround(ramp(2 * y + 0.5, 2 * x + 0.5)));
  const CropRect r{8, 12, 40, 60, true};
  ASSERT_EQ(crop_scale_eighths(r, 20, 30), 4);
  std::vector<float> a(20 * 30), b(20 * 30);
  crop_resize_scale(full, r, 20, 30, a.data());
  crop_resize_scale_scaled(half, 4, r, 20, 30, b.data());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 0.51f / 127.5f) << i;
  // Real JPEG through the loader's one call: the same picture, up to the
  // smoothing of the smaller IDCT; without DCT scaling exactly the two steps.
  const Image photo = test_image(240, 320, 3, 4);
  const auto jpeg = encode_jpeg(photo, 95);
  const CropRect c = central_crop(240, 320, 56, 56, 0.875f);
  ASSERT_EQ(crop_scale_eighths(c, 56, 56), 4);  // 210 * 4/8 >= 56
  const auto crop = [&](int height, int width) {
    EXPECT_EQ(std::tie(height, width), std::make_tuple(240, 320));
    return central_crop(height, width, 56, 56, 0.875f);
  };
  std::vector<float> x(56 * 56 * 3), y(x.size()), z(x.size());
  crop_resize_scale(decode(jpeg, 3), c, 56, 56, x.data());
  decode_crop_resize_scale(jpeg.data(), jpeg.size(), 3, "p", crop, 56, 56, false, y.data());
  EXPECT_EQ(x, y);
  decode_crop_resize_scale(jpeg.data(), jpeg.size(), 3, "p", crop, 56, 56, true, z.data());
  double diff = 0;
  for (size_t i = 0; i < x.size(); ++i) diff += std::fabs(x[i] - z[i]);
  EXPECT_LT(diff / x.size(), 0.05);  // ~6 of 255 levels
  EXPECT_GT(diff, 0.0);              // it did decode at 4/8
  // PNG: always full size.
  const auto png = encode_png(photo);
  decode_crop_resize_scale(png.data(), png.size(), 3, "p", crop, 56, 56, true, z.data());
  std::vector<float> ref(x.size());
  crop_resize_scale(photo, c, 56, 56, ref.data());
  EXPECT_EQ(z, ref);
}

TEST(Mixup, MixImagesAndLambda) {
  const std::vector<float> a = {1, -1, 0.5f, 0}, b = {-1, 1, 0.5f, 1};
  std::vector<float> out(4);
  mix_images(a.data(), b.data(), 0.25f, 4, out.data());
  EXPECT_THAT(out, ::testing::Pointwise(::testing::FloatEq(),
                                        std::vector<float>{-0.5f, 0.5f, 0.5f, 0.75f}));
  mix_images(a.data(), b.data(), 1.0f, 4, out.data());
  EXPECT_EQ(out, a);

  EXPECT_EQ(mixup_lambda(3, 17, 0.2f), mixup_lambda(3, 17, 0.2f));
  EXPECT_NE(mixup_lambda(3, 17, 0.2f), mixup_lambda(3, 18, 0.2f));
  EXPECT_NE(mixup_lambda(3, 17, 0.2f), mixup_lambda(4, 17, 0.2f));
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
  for (float alpha : {0.05f, 0.2f, 1.0f, 4.0f}) {
    const int n = 4000;
    double sum = 0, sq = 0;
    for (int s = 0; s < n; ++s) {
      const float l = mixup_lambda(9, s, alpha);
      ASSERT_TRUE(l >= 0.0f && l <= 1.0f) << l;
      sum += l;
      sq += double(l) * l;
    }
    const double mean = sum / n, var = sq / n - mean * mean, want = 1.0 / (4 * (2 * alpha + 1));
    EXPECT_NEAR(mean, 0.5, 0.025) << alpha;
    EXPECT_NEAR(var, want, 0.1 * want) << alpha;
  }
  EXPECT_THAT(error_of([] { mixup_lambda(1, 0, 0.0f); }), HasSubstr("alpha"));
}

}  // namespace
}  // namespace vmoe
