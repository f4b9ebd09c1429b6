#include "datasets/image_resize.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/check.h"

namespace vmoe {
namespace {

// Where output index i samples along one axis: the two source indices and
// the weight of the second.
struct Tap {
  int lo = 0, hi = 0;
  double frac = 0.0;
};

std::vector<Tap> taps(int in_size, int out_size) {
  std::vector<Tap> out(out_size);
  const double scale = static_cast<double>(in_size) / out_size;
  for (int i = 0; i < out_size; ++i) {
    // Half-pixel centers, clamped: positions before the first (after the
    // last) source center take the edge pixel.
    const double pos = std::clamp((i + 0.5) * scale - 0.5, 0.0, static_cast<double>(in_size - 1));
    const int lo = static_cast<int>(std::floor(pos));
    out[i] = {lo, std::min(lo + 1, in_size - 1), pos - lo};
  }
  return out;
}

}  // namespace

Image resize_bilinear(const Image& in, int height, int width) {
  VMOE_CHECK(in.height > 0 && in.width > 0 && in.channels > 0 && height > 0 && width > 0,
             "internal error: resizing a ", in.height, "x", in.width, "x", in.channels,
             " image to ", height, "x", width);
  if (in.height == height && in.width == width) return in;
  const std::vector<Tap> ys = taps(in.height, height), xs = taps(in.width, width);
  const int c = in.channels;
  Image out{height, width, c, std::vector<uint8_t>(static_cast<size_t>(height) * width * c)};
  for (int y = 0; y < height; ++y) {
    const uint8_t* top = in.pixels.data() + static_cast<size_t>(ys[y].lo) * in.width * c;
    const uint8_t* bottom = in.pixels.data() + static_cast<size_t>(ys[y].hi) * in.width * c;
    const double fy = ys[y].frac;
    uint8_t* row = out.pixels.data() + static_cast<size_t>(y) * width * c;
    for (int x = 0; x < width; ++x) {
      const int left = xs[x].lo * c, right = xs[x].hi * c;
      const double fx = xs[x].frac;
      for (int k = 0; k < c; ++k) {
        const double upper = top[left + k] + fx * (top[right + k] - top[left + k]);
        const double lower = bottom[left + k] + fx * (bottom[right + k] - bottom[left + k]);
        // Values stay in [0, 255], so +0.5 and truncation round to nearest.
        row[x * c + k] = static_cast<uint8_t>(upper + fy * (lower - upper) + 0.5);
      }
    }
  }
  return out;
}

Image convert_channels(const Image& in, int channels) {
  VMOE_CHECK((in.channels == 1 || in.channels == 3) && (channels == 1 || channels == 3),
             "internal error: converting ", in.channels, " channels to ", channels);
  if (in.channels == channels) return in;
  const size_t n = static_cast<size_t>(in.height) * in.width;
  Image out{in.height, in.width, channels, std::vector<uint8_t>(n * channels)};
  const uint8_t* p = in.pixels.data();
  if (channels == 1) {
    // Integer weights in thousandths: exact rounding, no float ties.
    for (size_t i = 0; i < n; ++i, p += 3) {
      out.pixels[i] = static_cast<uint8_t>((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000);
    }
  } else {
    for (size_t i = 0; i < n; ++i) std::fill_n(out.pixels.data() + 3 * i, 3, p[i]);
  }
  return out;
}

Image fit_image(Image in, int height, int width, int channels) {
  if (in.channels != channels) in = convert_channels(in, channels);
  if (in.height != height || in.width != width) in = resize_bilinear(in, height, width);
  return in;
}

}  // namespace vmoe
