// Times the per-image work of a JPEG dataset's loader thread on ONE thread:
// decode -> inception crop -> crop_resize_scale (with flip) for training,
// decode -> central crop -> crop_resize_scale for evaluation, and decode
// alone; each also with JPEG DCT scaling (decode at the smallest M/8 that
// keeps the crop at least the output size). The images are synthetic but
// photo-like (gradients, soft-edged shapes, texture, noise), so their JPEG
// sizes are those of photos; the mean is printed.
//
//   decode_bench [--images=256] [--height=224 --width=224] [--quality=90] [--seconds=3]
#include <gflags/gflags.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "core/random.h"
#include "datasets/crop_resize.h"
#include "datasets/image_codec.h"

DEFINE_int32(images, 256, "distinct JPEGs, cycled through");
DEFINE_int32(height, 224, "source image height");
DEFINE_int32(width, 224, "source image width");
DEFINE_int32(quality, 90, "JPEG quality");
DEFINE_int32(out, 224, "output height and width");
DEFINE_double(min_area, 0.08, "inception crop minimum area fraction");
DEFINE_double(crop_fraction, 0.875, "central crop fraction (eval)");
DEFINE_double(seconds, 3.0, "time per measurement (in 10 interleaved rounds)");

namespace {

using namespace vmoe;

// Gradient + soft-edged ellipses + oriented texture + noise, per channel.
Image photo_like(int h, int w, uint64_t seed) {
  RandomStream rng(seed, Stream::kTest);
  Image im{h, w, 3, std::vector<uint8_t>(size_t{3} * h * w)};
  std::vector<float> v(size_t{3} * h * w);
  const float angle = 6.2832f * rng.uniform();
  for (int c = 0; c < 3; ++c) {
    const float base = 60 + 120 * rng.uniform(), slope = 80 * (rng.uniform() - 0.5f);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        v[(size_t(y) * w + x) * 3 + c] =
            base + slope * (std::cos(angle) * x / w + std::sin(angle) * y / h);
  }
  for (int s = 0; s < 8; ++s) {  // shapes: objects with edges
    const float cy = h * rng.uniform(), cx = w * rng.uniform();
    const float ry = h * (0.05f + 0.25f * rng.uniform()), rx = w * (0.05f + 0.25f * rng.uniform());
    float color[3];
    for (float& c : color) c = 160 * (rng.uniform() - 0.5f);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const float d = std::hypot((y - cy) / ry, (x - cx) / rx);
        const float a = std::clamp((1.0f - d) * 8.0f, 0.0f, 1.0f);  // edge ~ 1/8 radius
        for (int c = 0; c < 3; ++c) v[(size_t(y) * w + x) * 3 + c] += a * color[c];
      }
    }
  }
  for (int t = 0; t < 3; ++t) {  // texture: oriented waves
    const float fy = 0.6f * (rng.uniform() - 0.5f), fx = 0.6f * (rng.uniform() - 0.5f);
    const float amp = 6 + 8 * rng.uniform(), phase = 6.2832f * rng.uniform();
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c)
          v[(size_t(y) * w + x) * 3 + c] += amp * std::sin(fy * y + fx * x + phase + c);
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const float noise = 6.0f * rng.normal();  // sensor noise, fine texture
    im.pixels[i] = static_cast<uint8_t>(std::clamp(v[i] + noise, 0.0f, 255.0f) + 0.5f);
  }
  return im;
}

// Phases run interleaved, in short rounds, so that the load of other
// processes on this shared machine spreads over all of them alike.
struct Phase {
  const char* name;
  std::function<void(int64_t)> body;  // one image, i = 0, 1, ...
  int64_t done = 0;
  double seconds = 0, wall = 0;  // thread CPU time, elapsed time
  double rate() const { return done / seconds; }
};

// This thread's CPU time: time the thread spent descheduled (2 shared cores)
// does not count, so images per CPU-second is the per-thread rate.
double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

void run(std::vector<Phase>& phases) {
  using clock = std::chrono::steady_clock;
  const int rounds = 10;
  for (Phase& p : phases) {
    for (int64_t i = 0; i < 4; ++i) p.body(i);  // warm up caches and allocator
  }
  for (int round = 0; round < rounds; ++round) {
    for (Phase& p : phases) {
      const auto start = clock::now();
      const double cpu_start = cpu_seconds();
      double elapsed = 0;
      do {
        for (int k = 0; k < 4; ++k) p.body(p.done++);
        elapsed = std::chrono::duration<double>(clock::now() - start).count();
      } while (elapsed < FLAGS_seconds / rounds);
      p.seconds += cpu_seconds() - cpu_start;
      p.wall += elapsed;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "Times JPEG decode + inception/central crop + resize + scale on one thread; prints "
      "images/s per thread.");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const int n = std::max(1, FLAGS_images), out = FLAGS_out;
  std::vector<std::vector<uint8_t>> jpegs;
  double bytes = 0;
  for (int i = 0; i < n; ++i) {
    jpegs.push_back(encode_jpeg(photo_like(FLAGS_height, FLAGS_width, 1000 + i), FLAGS_quality));
    bytes += jpegs.back().size();
  }
  std::vector<float> buffer(size_t{3} * out * out);
  double checksum = 0;  // keeps the work observable
  const auto what = [](int64_t i) {
    std::string s = "bench image ";
    s += std::to_string(i);
    return s;
  };
  const float min_area = static_cast<float>(FLAGS_min_area);
  const float fraction = static_cast<float>(FLAGS_crop_fraction);
  // The loader's per-image call; the crop of position i as in training.
  const auto step = [&](int64_t i, bool train, bool dct) {
    const std::vector<uint8_t>& d = jpegs[i % n];
    decode_crop_resize_scale(
        d.data(), d.size(), 3, what(i),
        [&](int h, int w) {
          return train ? inception_crop(1, i, h, w, min_area, true)
                       : central_crop(h, w, out, out, fraction);
        },
        out, out, dct, buffer.data());
    checksum += buffer[0];
  };
  std::vector<Phase> phases = {
      {"train", [&](int64_t i) { step(i, true, false); }},
      {"eval", [&](int64_t i) { step(i, false, false); }},
      {"decode-only",
       [&](int64_t i) {
         const std::vector<uint8_t>& d = jpegs[i % n];
         checksum += decode_image(d.data(), d.size(), 3, what(i)).pixels[0];
       }},
      {"train+dct", [&](int64_t i) { step(i, true, true); }},
      {"eval+dct", [&](int64_t i) { step(i, false, true); }},
  };
  run(phases);
  std::printf("images %d of %dx%d at quality %d, mean %.0f bytes; output %dx%dx3 floats\n", n,
              FLAGS_height, FLAGS_width, FLAGS_quality, bytes / n, out, out);
  // decode_bench: train 612.3 img/s/thread, eval ..., decode-only ..., ...
  std::string line = "decode_bench:";
  for (size_t k = 0; k < phases.size(); ++k) {
    char part[64];
    std::snprintf(part, sizeof(part), "%s %s %.1f%s", k ? "," : "", phases[k].name,
                  phases[k].rate(), k ? "" : " img/s/thread");
    line += part;
  }
  std::printf("wall clock (load of other processes included): train %.1f, eval %.1f img/s\n",
              phases[0].done / phases[0].wall, phases[1].done / phases[1].wall);
  std::printf("%s (per CPU-second; mean %.0f bytes, checksum %.3g)\n", line.c_str(), bytes / n,
              checksum);
  return 0;
}
