// vmoe_import: converts a public dataset, or your own images (a PNG folder or
// NumPy arrays), into the HDF5 schema of datasets/README.md (output/train.h5,
// output/test.h5, optionally output/val.h5); or a folder of JPEG/PNG class
// folders into sharded encoded datasets (--format=image_folder, under mpirun
// too: the ranks write the shards in turn).
#include <gflags/gflags.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "core/check.h"
#include "datasets/copy_examples.h"
#include "datasets/dataset_info.h"
#include "datasets/image_folder_shards.h"
#include "datasets/importer.h"
#include "launch/flag_lists.h"
#include "launch/mpi_program.h"

DEFINE_string(format, "",
              "Input format: fashion_mnist, cifar10, cifar100, png_folder, npy or image_folder.");
DEFINE_string(input, "",
              "Directory with the input files: the IDX files (fashion_mnist), "
              "data_batch_1..5.bin + test_batch.bin (cifar10), train.bin + test.bin (cifar100), "
              "train/CLASS/*.png + test/CLASS/*.png or CLASS/*.png (png_folder), "
              "train/CLASS/* + val/CLASS/* (or test/), or CLASS/* (image_folder: .jpg, .jpeg, "
              ".png), "
              "train_images.npy, train_labels.npy, test_images.npy, test_labels.npy and "
              "optionally class_names.txt (npy).");
DEFINE_string(output, "", "Directory to write train.h5 and test.h5 into (created if missing).");
DEFINE_int64(validation_size, 0, "Move the last N training examples into val.h5, a held-out "
             "split (e.g. for the confusion matrix vmoe_superclass clusters); 0 = none.");
DEFINE_string(image_size, "",
              "Resize every image to HxW (e.g. 28x28), bilinear; empty = keep the source size "
              "(png_folder: which all images must then share).");
DEFINE_int32(channels, 0,
             "1 (gray) or 3 (RGB); 0 = the source's (png_folder, npy: 1 if every source image "
             "is gray, else 3). RGB to gray uses the BT.601 luma weights.");
DEFINE_double(test_fraction, 0,
              "png_folder without train/ and test/ folders (required there): "
              "the fraction of each class moved into test.h5, e.g. 0.2.");
DEFINE_uint64(split_seed, 0, "Seed of the shuffle that picks the --test_fraction images.");
DEFINE_int64(images_per_shard, 10000, "image_folder: images per shard file.");
DEFINE_bool(skip_bad, false,
            "image_folder: skip files that are not readable JPEG/PNG images "
            "(counted and listed in the summary) instead of stopping at the first.");
DEFINE_int32(threads, 0,
             "image_folder: threads reading and checking files per rank; 0 = the "
             "cores divided by the ranks.");

namespace vmoe {
namespace {

int import_folder(MpiCommunicator& world) {
  ImageFolderImport o;
  o.input_dir = FLAGS_input;
  o.output_dir = FLAGS_output;
  if (!FLAGS_image_size.empty()) std::tie(o.height, o.width) = parse_image_size(FLAGS_image_size);
  o.channels = FLAGS_channels != 0 ? FLAGS_channels : 3;
  o.images_per_shard = FLAGS_images_per_shard;
  o.test_fraction = FLAGS_test_fraction;
  o.split_seed = FLAGS_split_seed;
  o.skip_bad = FLAGS_skip_bad;
  o.rank = world.rank();
  o.world = world.size();
  VMOE_CHECK(FLAGS_threads >= 0, "--threads must be >= 0, got ", FLAGS_threads);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.threads = FLAGS_threads > 0 ? FLAGS_threads : std::max(1, cores / world.size());
  const auto start = Clock::now();
  o.progress = [&](const std::string& path, int64_t images, int64_t done, int64_t total) {
    if (world.rank() != 0) return;
    const double s = seconds_since(start), rate = done / std::max(s, 1e-9);
    std::printf("vmoe_import: %s (%lld images; rank 0 at %lld of %lld, %.0f files/s, ETA %.0f s)\n",
                path.c_str(), static_cast<long long>(images), static_cast<long long>(done),
                static_cast<long long>(total), rate, (total - done) / std::max(rate, 1e-9));
    std::fflush(stdout);
  };
  const ImageFolderResult r = import_image_folder(o);
  int64_t counts[3] = {r.written, r.kept, r.skipped};
  world.all_reduce(counts, 3, ReduceOp::kSum);
  for (const std::string& why : r.skipped_files) std::printf("skipped: %s\n", why.c_str());
  world.barrier();
  if (world.rank() != 0) return 0;
  for (const ImageFolderSplit& split : r.splits) {
    std::printf("%s: %lld files, %lld shards: --%s_data='%s'\n", split.name.c_str(),
                static_cast<long long>(split.files), static_cast<long long>(split.shards),
                split.name == "train" ? "train" : "eval", split.pattern.c_str());
  }
  std::printf(
      "vmoe_import: %zu classes; wrote %lld images, kept %lld already there, skipped %lld "
      "bad files, in %.1f s\n",
      r.class_names.size(), static_cast<long long>(counts[0]), static_cast<long long>(counts[1]),
      static_cast<long long>(counts[2]), seconds_since(start));
  return 0;
}

int run(MpiCommunicator& world) {
  if (FLAGS_format.empty())
    throw Error(
        "--format is required (fashion_mnist, cifar10, cifar100, png_folder, npy or "
        "image_folder)");
  if (FLAGS_input.empty()) throw Error("--input is required (the directory to read)");
  if (FLAGS_output.empty()) throw Error("--output is required (the directory to write)");
  if (FLAGS_format == "image_folder") return import_folder(world);
  VMOE_CHECK(world.size() == 1, "--format=", FLAGS_format, " runs in one process (only ",
             "--format=image_folder shares its work over ranks)");
  if (FLAGS_validation_size < 0)
    throw Error("--validation_size must be >= 0, got " + std::to_string(FLAGS_validation_size));
  ImageImportOptions options;
  std::tie(options.height, options.width) = parse_image_size(FLAGS_image_size);
  options.channels = FLAGS_channels;
  options.test_fraction = FLAGS_test_fraction;
  options.split_seed = FLAGS_split_seed;
  std::vector<DatasetInfo> written =
      import_dataset(FLAGS_format, FLAGS_input, FLAGS_output, options);
  if (FLAGS_validation_size > 0) {
    const std::string train = FLAGS_output + "/train.h5", val = FLAGS_output + "/val.h5";
    split_off_tail(train, FLAGS_validation_size, val);
    written = {inspect_dataset(train), inspect_dataset(val),
               inspect_dataset(FLAGS_output + "/test.h5")};
  }
  for (const DatasetInfo& info : written) {
    std::printf("wrote %s: %lld examples, %dx%dx%d, %lld classes%s\n", info.path.c_str(),
                static_cast<long long>(info.size), info.height, info.width, info.channels,
                static_cast<long long>(info.num_classes),
                info.has_superclass ? " (with superclasses)" : "");
  }
  return 0;
}

}  // namespace
}  // namespace vmoe

int main(int argc, char** argv) {
  return vmoe::run_mpi_program(
      argc, argv,
      {.name = "vmoe_import",
       .usage =
           "converts a dataset into the V-MoE HDF5 format.\n"
           "Usage: vmoe_import --format=fashion_mnist|cifar10|cifar100|png_folder|npy --input=DIR\n"
           "         --output=DIR [--image_size=HxW] [--channels=1|3] [--validation_size=N]\n"
           "         [--test_fraction=F [--split_seed=S]]  (png_folder of class folders only)\n"
           "       [mpirun -n R] vmoe_import --format=image_folder --input=DIR --output=DIR\n"
           "         [--image_size=224] [--images_per_shard=10000] [--test_fraction=F] "
           "[--skip_bad]\n"
           "e.g.   vmoe_import --format=png_folder --input=my_images --output=data/mine\n"
           "         --test_fraction=0.2 --image_size=32x32 --channels=3",
       .help_source = "import_main",
       .run = vmoe::run});
}
