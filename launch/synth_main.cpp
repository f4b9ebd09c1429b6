// vmoe_synth: writes a synthetic JFT-like dataset (encoded JPEG/PNG images,
// sparse multi-hot labels) as HDF5 shards, to test the input pipeline and
// the planner at scale on disk. Every example is a pure function of
// (--seed, its index), so the output does not depend on the number of ranks
// or threads; under mpirun, rank r writes shards r, r + world, ...
//
//   vmoe_synth --output=data/synth --num_images=1000000 --num_test_images=10000
//       --num_classes=1000 --image_size=224 [--format=jpeg --quality=90]
//
// Shards are OUT/train-SSSSS-of-TTTTT.h5 and OUT/test-...; finished shards
// that match are skipped, so an interrupted run resumes where it stopped.
#include <gflags/gflags.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "datasets/dataset_info.h"
#include "datasets/dataset_writer.h"
#include "datasets/image_codec.h"
#include "datasets/synthetic_images.h"
#include "datasets/worker_pool.h"
#include "launch/flag_lists.h"
#include "launch/mpi_program.h"

DEFINE_string(output, "", "Directory for the shards (created if missing).");
DEFINE_int64(num_images, 0, "Training images (train-*.h5).");
DEFINE_int64(num_test_images, 0, "Test images (test-*.h5); 0 = none.");
DEFINE_int64(num_classes, 1000, "Classes (JFT-300M has 18,291).");
DEFINE_int64(images_per_shard, 10000, "Images per shard file (the last may hold fewer).");
DEFINE_string(image_size, "224", "Nominal image size, HxW or N; also the size the loader "
              "produces by default.");
DEFINE_int32(channels, 3, "1 (gray) or 3 (RGB).");
DEFINE_double(size_jitter, 0.25, "Each image side is the nominal one times a factor drawn "
              "uniformly in [1 - j, 1 + j], so crops and resizes see varied shapes.");
DEFINE_string(format, "jpeg", "jpeg or png.");
DEFINE_int32(quality, 90, "JPEG quality, 1-100.");
DEFINE_uint64(seed, 0, "Seed of labels and pixels.");
DEFINE_int32(threads, 0, "Encoding threads per rank; 0 = the cores divided by the ranks.");

namespace vmoe {
namespace {

constexpr int64_t kBlock = 256;  // images encoded, then appended, at a time

struct Split {
  const char* name;
  int64_t first, count;  // example indices [first, first + count)
};

std::string shard_path(const Split& split, int64_t shard, int64_t shards) {
  char name[64];
  std::snprintf(name, sizeof name, "%s-%05lld-of-%05lld.h5", split.name,
                static_cast<long long>(shard), static_cast<long long>(shards));
  return (std::filesystem::path(FLAGS_output) / name).string();
}

// True if a finished shard with the expected examples is already there.
bool shard_done(const std::string& path, int64_t count, const DatasetSpec& spec) {
  if (!std::filesystem::exists(path)) return false;
  const DatasetInfo info = inspect_dataset(path);
  VMOE_CHECK(info.size == count && info.num_classes == spec.num_classes && info.encoded &&
                 info.height == spec.height && info.width == spec.width &&
                 info.channels == spec.channels,
             path, " exists but was written with other flags; delete it or change --output");
  return true;
}

void write_shard(const std::string& path, int64_t first, int64_t count,
                 const SyntheticSpec& synth, const DatasetSpec& spec, WorkerPool& pool) {
  DatasetWriter writer(path, spec);
  std::vector<std::vector<uint8_t>> encoded(kBlock);
  std::vector<std::vector<int32_t>> labels(kBlock);
  std::vector<uint8_t> bytes;
  std::vector<int32_t> ids;
  std::vector<int64_t> image_offsets, label_offsets;
  const bool jpeg = FLAGS_format == "jpeg";
  for (int64_t begin = 0; begin < count; begin += kBlock) {
    const int64_t n = std::min(kBlock, count - begin);
    pool.parallel_for(n, [&](int64_t i) {
      const int64_t index = first + begin + i;
      labels[i] = synthetic_labels(synth, index);
      const Image image = synthetic_image(synth, index, labels[i]);
      encoded[i] = jpeg ? encode_jpeg(image, FLAGS_quality) : encode_png(image);
    });
    bytes.clear();
    ids.clear();
    image_offsets.assign(1, 0);
    label_offsets.assign(1, 0);
    for (int64_t i = 0; i < n; ++i) {
      bytes.insert(bytes.end(), encoded[i].begin(), encoded[i].end());
      ids.insert(ids.end(), labels[i].begin(), labels[i].end());
      image_offsets.push_back(static_cast<int64_t>(bytes.size()));
      label_offsets.push_back(static_cast<int64_t>(ids.size()));
    }
    writer.append({.count = n,
                   .images = bytes.data(),
                   .image_offsets = image_offsets.data(),
                   .label_ids = ids.data(),
                   .label_offsets = label_offsets.data()});
  }
  writer.finish();
}

int run(MpiCommunicator& world) {
  VMOE_CHECK(!FLAGS_output.empty(), "--output is required");
  VMOE_CHECK(FLAGS_num_images > 0, "--num_images must be positive, got ", FLAGS_num_images);
  VMOE_CHECK(FLAGS_num_test_images >= 0, "--num_test_images must be >= 0, got ",
             FLAGS_num_test_images);
  VMOE_CHECK(FLAGS_num_classes > 0 && FLAGS_num_classes <= INT32_MAX,
             "--num_classes must be in [1, 2^31), got ", FLAGS_num_classes);
  VMOE_CHECK(FLAGS_images_per_shard > 0, "--images_per_shard must be positive, got ",
             FLAGS_images_per_shard);
  VMOE_CHECK(FLAGS_channels == 1 || FLAGS_channels == 3, "--channels must be 1 or 3, got ",
             FLAGS_channels);
  VMOE_CHECK(FLAGS_size_jitter >= 0 && FLAGS_size_jitter < 1, "--size_jitter must be in [0, 1), got ",
             FLAGS_size_jitter);
  VMOE_CHECK(FLAGS_format == "jpeg" || FLAGS_format == "png", "--format must be jpeg or png, got '",
             FLAGS_format, "'");
  VMOE_CHECK(FLAGS_quality >= 1 && FLAGS_quality <= 100, "--quality must be in [1, 100], got ",
             FLAGS_quality);
  VMOE_CHECK(FLAGS_threads >= 0, "--threads must be >= 0, got ", FLAGS_threads);
  const auto [height, width] = parse_image_size(FLAGS_image_size);

  SyntheticSpec synth{.num_classes = FLAGS_num_classes, .height = height, .width = width,
                      .channels = FLAGS_channels,
                      .size_jitter = static_cast<float>(FLAGS_size_jitter), .seed = FLAGS_seed};
  DatasetSpec spec{.height = height, .width = width, .channels = FLAGS_channels, .encoded = true,
                   .num_classes = FLAGS_num_classes, .multi_label = true, .sparse_labels = true, .class_names = {}};
  for (int64_t c = 0; c < FLAGS_num_classes; ++c) {
    char name[32];
    std::snprintf(name, sizeof name, "class_%05lld", static_cast<long long>(c));
    spec.class_names.emplace_back(name);
  }
  std::filesystem::create_directories(FLAGS_output);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  WorkerPool pool(FLAGS_threads > 0 ? FLAGS_threads : std::max(1, cores / world.size()));

  const auto start = Clock::now();
  int64_t written = 0, skipped = 0;
  for (const Split& split : {Split{"train", 0, FLAGS_num_images},
                             Split{"test", FLAGS_num_images, FLAGS_num_test_images}}) {
    if (split.count == 0) continue;
    const int64_t shards = (split.count + FLAGS_images_per_shard - 1) / FLAGS_images_per_shard;
    for (int64_t s = world.rank(); s < shards; s += world.size()) {
      const int64_t first = s * split.count / shards;
      const int64_t count = (s + 1) * split.count / shards - first;
      const std::string path = shard_path(split, s, shards);
      if (shard_done(path, count, spec)) {
        skipped += count;
        continue;
      }
      write_shard(path, split.first + first, count, synth, spec, pool);
      written += count;
      if (world.rank() == 0) {
        std::printf("vmoe_synth: %s (%lld images, %.0f images/s on rank 0)\n", path.c_str(),
                    static_cast<long long>(count), written / seconds_since(start));
        std::fflush(stdout);
      }
    }
    if (world.rank() == 0) {
      std::printf("vmoe_synth: %s: %lld images in %lld shards: --%s_data='%s/%s-*.h5'\n",
                  split.name, static_cast<long long>(split.count),
                  static_cast<long long>(shards), split.name == std::string("test") ? "eval" : "train",
                  FLAGS_output.c_str(), split.name);
    }
  }
  int64_t totals[2] = {written, skipped};
  world.all_reduce(totals, 2, ReduceOp::kSum);
  if (world.rank() == 0) {
    std::printf("vmoe_synth: wrote %lld images (%lld already there) in %.1f s\n",
                static_cast<long long>(totals[0]), static_cast<long long>(totals[1]),
                seconds_since(start));
  }
  return 0;
}

}  // namespace
}  // namespace vmoe

int main(int argc, char** argv) {
  return vmoe::run_mpi_program(
      argc, argv,
      {.name = "vmoe_synth",
       .usage = "writes a synthetic JFT-like dataset of encoded images as HDF5 shards.\n"
                "Usage: [mpirun -n R] vmoe_synth --output=DIR --num_images=N "
                "[--num_test_images=M] [--num_classes=K] [--image_size=224] [--format=jpeg]",
       .help_source = "synth_main",
       .run = vmoe::run});
}
