#include "datasets/crop_resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/random.h"

namespace vmoe {
namespace {

// Uniform in [0, n) from one 32-bit word (multiply-shift, as augment.cpp).
int below(uint32_t word, int n) {
  return static_cast<int>((static_cast<uint64_t>(word) * static_cast<uint64_t>(n)) >> 32);
}

// Word block `block` of a (counter, stream, key) draw: the block number goes
// into the stream's high half, which the Stream values never use.
Philox4 block_words(uint64_t counter, Stream stream, uint64_t block, uint64_t key) {
  return philox4x32(counter, static_cast<uint64_t>(stream) + (block << 32), key);
}

// Where output index i samples along one axis: source indices (pre-multiplied
// by the channel count) and the weight of the second.
struct AxisTaps {
  std::vector<int> lo, hi;
  std::vector<float> frac;
};

// Output i samples the crop [start, start + len) at start + (i + 0.5) * len / out - 0.5,
// clamped to the crop's edge pixels, then (DCT-scaled decode) maps full-size
// position u to (u + 0.5) * eighths / 8 - 0.5 in an image of `size` pixels.
// Double here (once per row/column), float in the pixel loops.
AxisTaps axis_taps(int start, int len, int out, int eighths, int size, int mult, bool reverse) {
  AxisTaps t;
  t.lo.resize(out);
  t.hi.resize(out);
  t.frac.resize(out);
  const double step = static_cast<double>(len) / out;
  for (int i = 0; i < out; ++i) {
    double pos = start + std::clamp((i + 0.5) * step - 0.5, 0.0, static_cast<double>(len - 1));
    if (eighths != 8) pos = (pos + 0.5) * eighths / 8.0 - 0.5;
    pos = std::clamp(pos, 0.0, static_cast<double>(size - 1));
    const int lo = static_cast<int>(pos);  // pos >= 0: truncation is floor
    const int j = reverse ? out - 1 - i : i;
    t.lo[j] = lo * mult;
    t.hi[j] = std::min(lo + 1, size - 1) * mult;
    t.frac[j] = static_cast<float>(pos - lo);
  }
  return t;
}

// One output row from the vertically blended source row `row` (floats,
// channels last, indices relative to it); C > 0 fixes the channel count at
// compile time for the common 1 and 3.
template <int C>
void horizontal(const float* row, const AxisTaps& xs, int out_w, int channels, float* out) {
  const int c = C > 0 ? C : channels;
  for (int x = 0; x < out_w; ++x) {
    const float* a = row + xs.lo[x];
    const float* b = row + xs.hi[x];
    const float f = xs.frac[x];
    float* o = out + static_cast<int64_t>(x) * c;
    for (int k = 0; k < c; ++k) o[k] = a[k] + f * (b[k] - a[k]);
  }
}

}  // namespace

CropRect inception_crop(uint64_t seed, uint64_t position, int height, int width, float min_area,
                        bool flip) {
  VMOE_CHECK(height > 0 && width > 0, "inception_crop: empty image ", height, "x", width);
  VMOE_CHECK(min_area > 0.0f && min_area <= 1.0f, "inception_crop: min_area must be in (0, 1], got ",
             min_area);
  const double area = static_cast<double>(height) * width;
  const double log_lo = std::log(3.0 / 4.0), log_hi = std::log(4.0 / 3.0);
  CropRect rect{0, 0, height, width, false};  // the fallback: the whole image
  for (uint64_t attempt = 0; attempt < 10; ++attempt) {
    const Philox4 r = block_words(position, Stream::kAugment, attempt, seed);
    const double target = area * (min_area + (1.0 - min_area) * uniform01(r.v[0]));
    const double aspect = std::exp(log_lo + (log_hi - log_lo) * uniform01(r.v[1]));  // w / h
    const int64_t w = std::llround(std::sqrt(target * aspect));
    const int64_t h = std::llround(std::sqrt(target / aspect));
    // Rounding can leave the bounds: redraw rather than bend them.
    if (w < 1 || h < 1 || w > width || h > height) continue;
    if (static_cast<double>(w * h) < static_cast<double>(min_area) * area) continue;
    if (4 * w < 3 * h || 4 * h < 3 * w) continue;  // w / h outside [3/4, 4/3]
    rect = {below(r.v[2], height - static_cast<int>(h) + 1),
            below(r.v[3], width - static_cast<int>(w) + 1), static_cast<int>(h),
            static_cast<int>(w), false};
    break;
  }
  rect.flip = flip && (block_words(position, Stream::kAugment, 10, seed).v[0] & 1u) != 0;
  return rect;
}

CropRect central_crop(int height, int width, int out_h, int out_w, float crop_fraction) {
  VMOE_CHECK(height > 0 && width > 0 && out_h > 0 && out_w > 0,
             "central_crop: empty image or output (", height, "x", width, " to ", out_h, "x",
             out_w, ")");
  VMOE_CHECK(crop_fraction > 0.0f && crop_fraction <= 1.0f,
             "central_crop: crop_fraction must be in (0, 1], got ", crop_fraction);
  // Resize factor: the resized image is at least out / crop_fraction on both axes.
  const double r = std::max(out_h / (static_cast<double>(crop_fraction) * height),
                            out_w / (static_cast<double>(crop_fraction) * width));
  CropRect rect;
  rect.height = static_cast<int>(std::clamp<int64_t>(std::llround(out_h / r), 1, height));
  rect.width = static_cast<int>(std::clamp<int64_t>(std::llround(out_w / r), 1, width));
  rect.y = (height - rect.height) / 2;
  rect.x = (width - rect.width) / 2;
  return rect;
}

namespace {

// The crop and bilinear resize of crop_resize_scale_scaled, row by row: row y
// is written as floats in [0, 255] to row_at(y) ([out_w, channels]), then
// finish(y, row) turns it into the output.
template <typename RowAt, typename Finish>
void crop_resize(const Image& image, int eighths, const CropRect& rect, int out_h, int out_w,
                 RowAt&& row_at, Finish&& finish) {
  const int c = image.channels;
  VMOE_CHECK(image.height > 0 && image.width > 0 && c > 0 &&
                 image.pixels.size() == static_cast<size_t>(image.height) * image.width * c,
             "crop_resize_scale: bad image ", image.height, "x", image.width, "x", c, " with ",
             image.pixels.size(), " bytes");
  VMOE_CHECK(eighths >= 1 && eighths <= 8, "crop_resize_scale: eighths must be 1..8, got ",
             eighths);
  VMOE_CHECK(out_h > 0 && out_w > 0, "crop_resize_scale: empty output ", out_h, "x", out_w);
  // The rect is in full-size coordinates; at scale M/8 the image has ceil(size * M / 8) pixels.
  const auto scaled = [eighths](int n) { return (n * eighths + 7) / 8; };
  VMOE_CHECK(rect.y >= 0 && rect.x >= 0 && rect.height > 0 && rect.width > 0 &&
                 scaled(rect.y + rect.height) <= image.height &&
                 scaled(rect.x + rect.width) <= image.width,
             "crop_resize_scale: crop ", rect.height, "x", rect.width, " at (", rect.y, ", ",
             rect.x, ") is not inside the ", image.height, "x", image.width, " image (scale ",
             eighths, "/8)");
  const AxisTaps ys = axis_taps(rect.y, rect.height, out_h, eighths, image.height, 1, false);
  AxisTaps xs = axis_taps(rect.x, rect.width, out_w, eighths, image.width, c, rect.flip);
  // Only the source columns the taps touch are blended vertically.
  const int first = *std::min_element(xs.lo.begin(), xs.lo.end());
  const int last = *std::max_element(xs.hi.begin(), xs.hi.end()) + c;
  for (int x = 0; x < out_w; ++x) {
    xs.lo[x] -= first;
    xs.hi[x] -= first;
  }
  std::vector<float> row(last - first);
  const int span = last - first;
  const size_t stride = static_cast<size_t>(image.width) * c;
  for (int y = 0; y < out_h; ++y) {
    const uint8_t* top = image.pixels.data() + ys.lo[y] * stride + first;
    const uint8_t* bottom = image.pixels.data() + ys.hi[y] * stride + first;
    const float fy = ys.frac[y];
    float* blended = row.data();
    // Contiguous and branch-free: the compiler vectorizes this loop.
    for (int i = 0; i < span; ++i) {
      const float a = top[i];
      blended[i] = a + fy * (static_cast<float>(bottom[i]) - a);
    }
    float* o = row_at(y);
    if (c == 3) {
      horizontal<3>(blended, xs, out_w, c, o);
    } else if (c == 1) {
      horizontal<1>(blended, xs, out_w, c, o);
    } else {
      horizontal<0>(blended, xs, out_w, c, o);
    }
    finish(y, o);
  }
}

}  // namespace

void crop_resize_scale_scaled(const Image& image, int eighths, const CropRect& rect, int out_h,
                              int out_w, float* out) {
  const int64_t out_row = static_cast<int64_t>(out_w) * image.channels;
  crop_resize(
      image, eighths, rect, out_h, out_w, [&](int y) { return out + y * out_row; },
      [&](int, float* o) {
        // scale_pixel's exact expression (division, not a reciprocal): an
        // unresized crop equals scale_pixel bit for bit.
        for (int64_t i = 0; i < out_row; ++i) o[i] = o[i] / 127.5f - 1.0f;
      });
}

void crop_resize_u8(const Image& image, const CropRect& rect, int out_h, int out_w, uint8_t* out) {
  const int64_t out_row = static_cast<int64_t>(out_w) * image.channels;
  std::vector<float> row(static_cast<size_t>(out_row));
  crop_resize(
      image, 8, rect, out_h, out_w, [&](int) { return row.data(); },
      [&](int y, const float* o) {
        // Blends of 8-bit samples lie in [0, 255]: round to nearest.
        uint8_t* dst = out + y * out_row;
        for (int64_t i = 0; i < out_row; ++i) dst[i] = static_cast<uint8_t>(o[i] + 0.5f);
      });
}

void crop_resize_scale(const Image& image, const CropRect& rect, int out_h, int out_w, float* out) {
  crop_resize_scale_scaled(image, 8, rect, out_h, out_w, out);
}

int crop_scale_eighths(const CropRect& rect, int out_h, int out_w) {
  for (int m : kJpegScales) {  // rect.height * m / 8 >= out_h, in integers
    if (int64_t{rect.height} * m >= 8 * int64_t{out_h} &&
        int64_t{rect.width} * m >= 8 * int64_t{out_w}) {
      return m;
    }
  }
  return 8;
}

void mix_images(const float* a, const float* b, float lambda, int64_t n, float* out) {
  const float mu = 1.0f - lambda;
  for (int64_t i = 0; i < n; ++i) out[i] = lambda * a[i] + mu * b[i];
}

namespace {

// Sequential words from philox4x32(counter, stream + (block << 32), key).
class Words {
 public:
  Words(uint64_t counter, Stream stream, uint64_t key)
      : counter_(counter), stream_(stream), key_(key) {}
  uint32_t next() {
    if (used_ == 4) {
      words_ = block_words(counter_, stream_, block_++, key_);
      used_ = 0;
    }
    return words_.v[used_++];
  }
  double uniform_open() { return (static_cast<double>(next() >> 8) + 0.5) * 0x1.0p-24; }  // (0, 1)
  double normal() {
    const uint32_t a = next();
    return normal_from_bits(a, next());
  }

 private:
  uint64_t counter_;
  Stream stream_;
  uint64_t key_;
  uint64_t block_ = 0;
  Philox4 words_{};
  int used_ = 4;
};

// log of a Gamma(alpha, 1) draw (Marsaglia & Tsang 2000).
double log_gamma_draw(Words& words, double alpha) {
  double boost = 0.0;  // Gamma(a) = Gamma(a + 1) * U^(1/a) for a < 1
  if (alpha < 1.0) {
    boost = std::log(words.uniform_open()) / alpha;
    alpha += 1.0;
  }
  const double d = alpha - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  // Accepts with probability > 0.95 per round; the cap only bounds the loop.
  for (int round = 0; round < 1000; ++round) {
    const double x = words.normal();
    const double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    const double v3 = v * v * v;
    if (std::log(words.uniform_open()) < 0.5 * x * x + d - d * v3 + d * std::log(v3)) {
      return std::log(d * v3) + boost;
    }
  }
  return std::log(d) + boost;
}

}  // namespace

float mixup_lambda(uint64_t seed, int64_t step, float alpha) {
  VMOE_CHECK(alpha > 0.0f, "mixup_lambda: alpha must be > 0, got ", alpha);
  Words words(static_cast<uint64_t>(step), Stream::kMixup, seed);
  const double log_x = log_gamma_draw(words, alpha), log_y = log_gamma_draw(words, alpha);
  // X / (X + Y) = 1 / (1 + exp(log Y - log X)): no underflow for tiny alpha.
  return static_cast<float>(1.0 / (1.0 + std::exp(log_y - log_x)));
}

}  // namespace vmoe
