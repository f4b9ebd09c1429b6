#include "datasets/synthetic_images.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/random.h"

namespace vmoe {
namespace {

constexpr int kMaxLabels = 4;
constexpr float kMoreLabels = 0.47f;  // P(another label): mean ~1.9 labels per image

// Example `index`'s own stream: 2^16 draws each, labels first.
RandomStream example_stream(const SyntheticSpec& spec, int64_t index) {
  RandomStream r(spec.seed, Stream::kSynthetic);
  r.set_counter(static_cast<uint64_t>(index) << 16);
  return r;
}

// A class's look, fixed by the seed: colour, stripe direction and period.
struct ClassLook {
  float color[3];
  float dir_x, dir_y, period;
};

ClassLook class_look(const SyntheticSpec& spec, int32_t c) {
  RandomStream r(spec.seed ^ 0x9e3779b97f4a7c15ULL, Stream::kSynthetic);
  r.set_counter(static_cast<uint64_t>(c) << 4);
  ClassLook look;
  for (float& v : look.color) v = 30.0f + 195.0f * r.uniform();
  const float angle = 3.14159265f * r.uniform();
  look.dir_x = std::cos(angle);
  look.dir_y = std::sin(angle);
  look.period = 4.0f + 12.0f * r.uniform();
  return look;
}

uint8_t clamp_byte(float v) {
  return static_cast<uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f));
}

}  // namespace

std::vector<int32_t> synthetic_labels(const SyntheticSpec& spec, int64_t index) {
  VMOE_CHECK(spec.num_classes > 0, "synthetic data needs num_classes > 0");
  RandomStream r = example_stream(spec, index);
  int count = 1;
  while (count < kMaxLabels && r.uniform() < kMoreLabels) ++count;
  count = static_cast<int>(std::min<int64_t>(count, spec.num_classes));
  std::vector<int32_t> labels;
  while (static_cast<int>(labels.size()) < count) {
    const float u = r.uniform();
    const auto c = static_cast<int32_t>(
        std::min<int64_t>(spec.num_classes - 1, static_cast<int64_t>(u * u * spec.num_classes)));
    if (std::find(labels.begin(), labels.end(), c) == labels.end()) labels.push_back(c);
  }
  std::sort(labels.begin(), labels.end());
  return labels;
}

Image synthetic_image(const SyntheticSpec& spec, int64_t index,
                      const std::vector<int32_t>& labels) {
  VMOE_CHECK(spec.height > 0 && spec.width > 0 && (spec.channels == 1 || spec.channels == 3),
             "synthetic images need a positive size and 1 or 3 channels");
  RandomStream r = example_stream(spec, index);
  r.set_counter(r.counter() + 64);  // past the labels' draws
  const auto side = [&](int s) {
    const float scale = 1.0f + spec.size_jitter * (2.0f * r.uniform() - 1.0f);
    return std::max(8, static_cast<int>(std::lround(s * scale)));
  };
  Image image;
  image.height = side(spec.height);
  image.width = side(spec.width);
  image.channels = spec.channels;
  const int h = image.height, w = image.width, ch = spec.channels;
  image.pixels.resize(static_cast<size_t>(h) * w * ch);

  // Background: a vertical blend of two colours plus noise (xorshift, cheap).
  float top[3], bottom[3];
  for (int c = 0; c < 3; ++c) {
    top[c] = 40.0f + 175.0f * r.uniform();
    bottom[c] = 40.0f + 175.0f * r.uniform();
  }
  uint32_t noise = r.next_u32() | 1u;
  for (int y = 0; y < h; ++y) {
    const float t = static_cast<float>(y) / static_cast<float>(h);
    uint8_t* row = image.pixels.data() + static_cast<size_t>(y) * w * ch;
    for (int x = 0; x < w; ++x) {
      noise ^= noise << 13;
      noise ^= noise >> 17;
      noise ^= noise << 5;
      const float n = static_cast<float>(noise & 31u) - 15.5f;
      for (int c = 0; c < ch; ++c) {
        const int src = ch == 1 ? 1 : c;
        row[x * ch + c] = clamp_byte(top[src] + t * (bottom[src] - top[src]) + n);
      }
    }
  }
  // One striped rectangle per label, 30-60% of each side, anywhere inside.
  for (const int32_t label : labels) {
    const ClassLook look = class_look(spec, label);
    const int rh = std::max(2, static_cast<int>(h * (0.3f + 0.3f * r.uniform())));
    const int rw = std::max(2, static_cast<int>(w * (0.3f + 0.3f * r.uniform())));
    const int y0 = static_cast<int>(r.uniform() * static_cast<float>(h - rh + 1));
    const int x0 = static_cast<int>(r.uniform() * static_cast<float>(w - rw + 1));
    for (int y = y0; y < y0 + rh; ++y) {
      uint8_t* row = image.pixels.data() + static_cast<size_t>(y) * w * ch;
      for (int x = x0; x < x0 + rw; ++x) {
        // Triangle wave along the stripe direction: 0.6 .. 1.0 of the colour.
        const float phase = (look.dir_x * x + look.dir_y * y) / look.period;
        const float tri = std::fabs(phase - 2.0f * std::floor(0.5f * phase + 0.5f));
        const float shade = 0.6f + 0.4f * tri;
        for (int c = 0; c < ch; ++c) {
          row[x * ch + c] = clamp_byte(shade * look.color[ch == 1 ? 1 : c]);
        }
      }
    }
  }
  return image;
}

}  // namespace vmoe
