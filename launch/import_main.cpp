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
#include "datasets/cifar_reader.h"
#include "datasets/copy_examples.h"
#include "datasets/dataset_info.h"
#include "datasets/image_folder_shards.h"
#include "datasets/importer.h"
#include "datasets/tfrecord_shards.h"
#include "launch/flag_lists.h"
#include "launch/mpi_program.h"

DEFINE_string(format, "",
              "Input format: fashion_mnist, cifar10, cifar100, png_folder, npy, image_folder or "
              "tfrecord.");
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
DEFINE_string(val_labels, "",
              "image_folder with a flat val/ (or test/) folder, as ImageNet's: "
              "the images' classes, one CLASS per line in sorted file-name order, or FILE CLASS "
              "lines; CLASS is a class folder name (e.g. a WordNet id) or a label number.");
DEFINE_string(class_map, "",
              "image_folder: 'FOLDER NAME...' lines giving the class names "
              "stored for the folders (e.g. ImageNet's LOC_synset_mapping.txt).");
DEFINE_bool(skip_bad, false,
            "image_folder: skip files that are not readable JPEG/PNG images "
            "(counted and listed in the summary) instead of stopping at the first.");
DEFINE_string(test_input, "",
              "tfrecord: the test split's TFRecord files (a path, a glob or a "
              "comma-separated list); --input names the training files.");
DEFINE_int64(num_classes, 0, "tfrecord: the number of classes (or give --class_names).");
DEFINE_string(class_names, "", "tfrecord: a file with one class name per line, in label order.");
DEFINE_string(image_key, "image",
              "tfrecord: the tf.Example feature holding the encoded image "
              "(TFDS: image; others use image/encoded).");
DEFINE_string(label_key, "label",
              "tfrecord: the tf.Example int64 feature holding the label "
              "(TFDS: label; others use image/class/label).");
DEFINE_int32(threads, 0,
             "image_folder: threads reading and checking files per rank; 0 = the "
             "cores divided by the ranks.");

namespace vmoe {
namespace {

// The progress line of a shard, printed by rank 0.
void print_progress(MpiCommunicator& world, Clock::time_point start, const std::string& path,
                    int64_t images, int64_t done, int64_t total, const char* unit) {
  if (world.rank() != 0) return;
  const double s = seconds_since(start), rate = done / std::max(s, 1e-9);
  std::printf("vmoe_import: %s (%lld images; rank 0 at %lld of %lld %s, ETA %.0f s)\n",
              path.c_str(), static_cast<long long>(images), static_cast<long long>(done),
              static_cast<long long>(total), unit, (total - done) / std::max(rate, 1e-9));
  std::fflush(stdout);
}

// The importers' progress callback: print_progress, counting input files.
auto progress_printer(MpiCommunicator& world, Clock::time_point start) {
  return [&world, start](const std::string& path, int64_t images, int64_t done, int64_t total) {
    print_progress(world, start, path, images, done, total, "files");
  };
}

// The ranks' counts summed, for rank 0's summary line.
struct ImportTotals {
  int64_t written = 0, kept = 0, skipped = 0;
  Clock::time_point start;
  void print(size_t classes, const char* bad) const {
    std::printf(
        "vmoe_import: %zu classes; wrote %lld images, kept %lld already there, skipped "
        "%lld %s, in %.1f s\n",
        classes, static_cast<long long>(written), static_cast<long long>(kept),
        static_cast<long long>(skipped), bad, seconds_since(start));
  }
};

// Sums this rank's counts over the ranks; each rank lists what it skipped.
ImportTotals gather_totals(MpiCommunicator& world, int64_t written, int64_t kept, int64_t skipped,
                           const std::vector<std::string>& skipped_items, Clock::time_point start) {
  int64_t counts[3] = {written, kept, skipped};
  world.all_reduce(counts, 3, ReduceOp::kSum);
  for (const std::string& why : skipped_items) std::printf("skipped: %s\n", why.c_str());
  std::fflush(stdout);
  world.barrier();
  return {counts[0], counts[1], counts[2], start};
}

// The flags both shard importers (ImageFolderImport, TfRecordImport) take.
template <typename Options>
void set_shard_options(Options& o, MpiCommunicator& world) {
  o.output_dir = FLAGS_output;
  if (!FLAGS_image_size.empty()) std::tie(o.height, o.width) = parse_image_size(FLAGS_image_size);
  o.channels = FLAGS_channels != 0 ? FLAGS_channels : 3;
  o.skip_bad = FLAGS_skip_bad;
  o.rank = world.rank();
  o.world = world.size();
}

int import_folder(MpiCommunicator& world) {
  ImageFolderImport o;
  o.input_dir = FLAGS_input;
  set_shard_options(o, world);
  o.images_per_shard = FLAGS_images_per_shard;
  o.test_fraction = FLAGS_test_fraction;
  o.split_seed = FLAGS_split_seed;
  o.val_labels = FLAGS_val_labels;
  o.class_map = FLAGS_class_map;
  VMOE_CHECK(FLAGS_threads >= 0, "--threads must be >= 0, got ", FLAGS_threads);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.threads = FLAGS_threads > 0 ? FLAGS_threads : std::max(1, cores / world.size());
  const auto start = Clock::now();
  o.progress = progress_printer(world, start);
  const ImageFolderResult r = import_image_folder(o);
  const ImportTotals totals =
      gather_totals(world, r.written, r.kept, r.skipped, r.skipped_files, start);
  if (world.rank() != 0) return 0;
  for (const ImageFolderSplit& split : r.splits) {
    std::printf("%s: %lld files, %lld shards: --%s_data='%s'\n", split.name.c_str(),
                static_cast<long long>(split.files), static_cast<long long>(split.shards),
                split.name == "train" ? "train" : "eval", split.pattern.c_str());
  }
  totals.print(r.class_names.size(), "bad files");
  return 0;
}

std::vector<std::string> tfrecord_class_names() {
  if (!FLAGS_class_names.empty()) return read_class_names(FLAGS_class_names, FLAGS_num_classes);
  std::vector<std::string> names;
  VMOE_CHECK(FLAGS_num_classes > 0 && FLAGS_num_classes <= INT32_MAX,
             "--format=tfrecord needs --num_classes=N (in [1, 2^31)) or --class_names=FILE");
  for (int64_t c = 0; c < FLAGS_num_classes; ++c) names.push_back(str_cat("class_", c));
  return names;
}

int import_tfrecord(MpiCommunicator& world) {
  TfRecordImport o;
  o.train_files = expand_dataset_files(FLAGS_input);
  if (!FLAGS_test_input.empty()) o.test_files = expand_dataset_files(FLAGS_test_input);
  set_shard_options(o, world);
  o.image_key = FLAGS_image_key;
  o.label_key = FLAGS_label_key;
  o.class_names = tfrecord_class_names();
  const auto start = Clock::now();
  o.progress = progress_printer(world, start);
  const TfRecordResult r = import_tfrecords(o);
  const ImportTotals totals =
      gather_totals(world, r.written, r.kept, r.skipped, r.skipped_records, start);
  if (world.rank() != 0) return 0;
  for (const auto& [split, files] :
       {std::pair{"train", &o.train_files}, std::pair{"test", &o.test_files}}) {
    if (files->empty()) continue;
    std::printf("%s: %zu TFRecord files, %zu shards: --%s_data='%s/%s-*.h5'\n", split,
                files->size(), files->size(), split == std::string("train") ? "train" : "eval",
                FLAGS_output.c_str(), split);
  }
  totals.print(o.class_names.size(), "bad records");
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
  if (FLAGS_format == "tfrecord") return import_tfrecord(world);
  VMOE_CHECK(world.size() == 1, "--format=", FLAGS_format, " runs in one process (only ",
             "--format=image_folder and tfrecord share their work over ranks)");
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
           "       [mpirun -n R] vmoe_import --format=tfrecord --input=GLOB [--test_input=GLOB]\n"
           "         --output=DIR --num_classes=N|--class_names=FILE [--image_key=image] "
           "[--label_key=label]\n"
           "e.g.   vmoe_import --format=png_folder --input=my_images --output=data/mine\n"
           "         --test_fraction=0.2 --image_size=32x32 --channels=3",
       .help_source = "import_main",
       .run = vmoe::run});
}
