// vmoe_import: converts a public dataset, or your own images (a PNG folder or
// NumPy arrays), into the HDF5 schema of datasets/README.md (output/train.h5,
// output/test.h5, optionally output/val.h5).
#include <gflags/gflags.h>

#include <charconv>
#include <cstdio>
#include <exception>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/check.h"
#include "datasets/copy_examples.h"
#include "datasets/dataset_info.h"
#include "datasets/importer.h"
#include "launch/flag_lists.h"

DECLARE_bool(help);

DEFINE_string(format, "", "Input format: fashion_mnist, cifar10, cifar100, png_folder or npy.");
DEFINE_string(input, "",
              "Directory with the input files: the IDX files (fashion_mnist), "
              "data_batch_1..5.bin + test_batch.bin (cifar10), train.bin + test.bin (cifar100), "
              "train/CLASS/*.png + test/CLASS/*.png or CLASS/*.png (png_folder), "
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

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "converts a dataset into the V-MoE HDF5 format.\n"
      "Usage: vmoe_import --format=fashion_mnist|cifar10|cifar100|png_folder|npy --input=DIR\n"
      "         --output=DIR [--image_size=HxW] [--channels=1|3] [--validation_size=N]\n"
      "         [--test_fraction=F [--split_seed=S]]  (png_folder of class folders only)\n"
      "e.g.   vmoe_import --format=png_folder --input=my_images --output=data/mine\n"
      "         --test_fraction=0.2 --image_size=32x32 --channels=3");
  // --help lists this tool's flags only, not gflags' own.
  gflags::ParseCommandLineNonHelpFlags(&argc, &argv, true);
  if (FLAGS_help) {
    gflags::ShowUsageWithFlagsRestrict(argv[0], "import_main");
    return 0;
  }
  gflags::HandleCommandLineHelpFlags();  // --helpfull, --version, ...
  try {
    if (argc > 1) throw vmoe::Error(std::string("unexpected argument '") + argv[1] + "'");
    if (FLAGS_format.empty())
      throw vmoe::Error(
          "--format is required (fashion_mnist, cifar10, cifar100, png_folder or npy)");
    if (FLAGS_input.empty()) throw vmoe::Error("--input is required (the directory to read)");
    if (FLAGS_output.empty()) throw vmoe::Error("--output is required (the directory to write)");
    if (FLAGS_validation_size < 0)
      throw vmoe::Error("--validation_size must be >= 0, got " +
                        std::to_string(FLAGS_validation_size));
    vmoe::ImageImportOptions options;
    std::tie(options.height, options.width) = vmoe::parse_image_size(FLAGS_image_size);
    options.channels = FLAGS_channels;
    options.test_fraction = FLAGS_test_fraction;
    options.split_seed = FLAGS_split_seed;
    std::vector<vmoe::DatasetInfo> written =
        vmoe::import_dataset(FLAGS_format, FLAGS_input, FLAGS_output, options);
    if (FLAGS_validation_size > 0) {
      const std::string train = FLAGS_output + "/train.h5", val = FLAGS_output + "/val.h5";
      vmoe::split_off_tail(train, FLAGS_validation_size, val);
      written = {vmoe::inspect_dataset(train), vmoe::inspect_dataset(val),
                 vmoe::inspect_dataset(FLAGS_output + "/test.h5")};
    }
    for (const vmoe::DatasetInfo& info : written) {
      std::printf("wrote %s: %lld examples, %dx%dx%d, %lld classes%s\n", info.path.c_str(),
                  static_cast<long long>(info.size), info.height, info.width, info.channels,
                  static_cast<long long>(info.num_classes),
                  info.has_superclass ? " (with superclasses)" : "");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmoe_import: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
