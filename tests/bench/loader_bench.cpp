// Images/s of the whole input pipeline with no model: shard reads, decode,
// crop, flip, scaling and batch assembly, up to the batch the trainer takes,
// for each --threads count; and, beside it, the per-image work alone on one
// thread on the same images (decode + inception crop + resize + flip for
// JPEG/PNG datasets, the crop/flip/scale for raw ones), the rate one loader
// thread could at best reach. Prints one line per measurement and the ratios
// the targets are about (one thread against the per-image rate; N threads
// against one).
//
//   loader_bench --data='data/synth/train-*.h5' [--threads=1,2] [--batch=256]
//                [--image_size=224] [--seconds=4]
#include <gflags/gflags.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/h5_vlen.h"
#include "datasets/augment.h"
#include "datasets/batch_reader.h"
#include "datasets/crop_resize.h"
#include "datasets/dataset_info.h"
#include "datasets/image_codec.h"
#include "datasets/loader.h"
#include "datasets/shard_cache.h"

DEFINE_string(data, "", "dataset file, glob or comma-separated shard list (required)");
DEFINE_string(threads, "1,2", "comma-separated loader thread counts to measure");
DEFINE_int64(batch, 256, "global batch size");
DEFINE_int32(image_size, 0, "encoded datasets: output size (0: the dataset's)");
DEFINE_int32(prefetch, 2, "batches prepared ahead");
DEFINE_double(seconds, 4.0, "time per measurement");
DEFINE_double(min_area, 0.05, "inception crop minimum area fraction");
DEFINE_bool(uint8, false, "batches of 8-bit pixels (a GPU run's) instead of [-1, 1] floats");

namespace {

using namespace vmoe;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Per-image work on one thread, on the first images of the first shard.
double per_image_rate(const DatasetInfo& info, int out_h, int out_w) {
  ShardCache shards(info, 1);
  OpenShard& shard = shards.get(0);
  const int64_t n = std::min<int64_t>(256, info.shard_offsets[1]);
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i;
  std::vector<uint8_t> bytes;
  std::vector<int64_t> offsets;
  if (info.encoded) {
    h5::read_vlen_rows(shard.images, rows, bytes, offsets);
  } else {
    bytes.resize(static_cast<size_t>(n * info.height * info.width * info.channels));
    shard.images.read_rows<uint8_t>(rows, bytes.data());
  }
  std::vector<float> out(static_cast<size_t>(out_h) * out_w * info.channels);
  const int64_t raw = int64_t{info.height} * info.width * info.channels;
  int64_t done = 0;
  const auto start = Clock::now();
  while (since(start) < FLAGS_seconds) {
    for (int64_t i = 0; i < n; ++i, ++done) {
      if (info.encoded) {
        const Image image = decode_image(bytes.data() + offsets[i],
                                         static_cast<size_t>(offsets[i + 1] - offsets[i]),
                                         info.channels, "bench image");
        const CropRect rect = inception_crop(1, static_cast<uint64_t>(done), image.height,
                                             image.width, static_cast<float>(FLAGS_min_area), true);
        crop_resize_scale(image, rect, out_h, out_w, out.data());
      } else {
        const Augmentation a = draw_augmentation(1, static_cast<uint64_t>(done), 0, true);
        augment_image(bytes.data() + i * raw, info.height, info.width, info.channels, 0, a,
                      out.data());
      }
    }
  }
  return static_cast<double>(done) / since(start);
}

// The options of the measured runs.
LoaderOptions options(int threads) {
  return {.path = FLAGS_data,
          .batch_size = FLAGS_batch,
          .training = true,
          .seed = 1,
          .flip = true,
          .prefetch = FLAGS_prefetch,
          .image_height = FLAGS_image_size,
          .image_width = FLAGS_image_size,
          .min_area = static_cast<float>(FLAGS_min_area),
          .threads = threads,
          .uint8_images = FLAGS_uint8};
}

// The shard reads of whole batches alone (the loader's fetch stage), one thread.
double fetch_rate(const DatasetInfo& info) {
  BatchReader reader(options(1), info);
  FetchedBatch f;
  int64_t step = 0;
  reader.fetch(step++, f);
  const auto start = Clock::now();
  while (since(start) < FLAGS_seconds / 2) reader.fetch(step++, f);
  return static_cast<double>((step - 1) * FLAGS_batch) / since(start);
}

// Training batches from the Loader for FLAGS_seconds, after a warm-up.
double loader_rate(const DatasetInfo& info, int threads) {
  (void)info;
  Loader loader(options(threads));
  Batch batch;
  for (int i = 0; i < 2; ++i) loader.next(batch);
  int64_t images = 0;
  const auto start = Clock::now();
  while (since(start) < FLAGS_seconds) {
    loader.next(batch);
    images += batch.rows;
  }
  return static_cast<double>(images) / since(start);
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("images/s of the input pipeline (no model) for several thread counts");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_data.empty()) {
    std::fprintf(stderr, "loader_bench: --data is required\n");
    return 1;
  }
  try {
    const DatasetInfo info = inspect_dataset(FLAGS_data);
    const int out_h = info.encoded && FLAGS_image_size > 0 ? FLAGS_image_size : info.height;
    const int out_w = info.encoded && FLAGS_image_size > 0 ? FLAGS_image_size : info.width;
    std::printf("loader_bench: %s: %lld %s images, %d shard(s), output %dx%dx%d %s, batch %lld\n",
                FLAGS_data.c_str(), static_cast<long long>(info.size),
                info.encoded ? "encoded" : "raw", static_cast<int>(info.shards.size()), out_h,
                out_w, info.channels, FLAGS_uint8 ? "uint8" : "float",
                static_cast<long long>(FLAGS_batch));
    const double per_image = per_image_rate(info, out_h, out_w);
    std::printf("per-image work, 1 thread: %.0f images/s\n", per_image);
    std::printf("shard reads alone, 1 thread: %.0f images/s\n", fetch_rate(info));
    double one = 0;
    std::string list = FLAGS_threads;
    for (size_t at = 0; at < list.size();) {
      const size_t comma = std::min(list.find(',', at), list.size());
      const int threads = std::stoi(list.substr(at, comma - at));
      at = comma + 1;
      const double rate = loader_rate(info, threads);
      if (threads == 1) one = rate;
      std::printf("loader, %d thread(s): %.0f images/s (%.0f%% of the per-image rate", threads,
                  rate, 100 * rate / per_image);
      if (one > 0 && threads > 1) std::printf(", %.2fx one thread", rate / one);
      std::printf(")\n");
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loader_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
