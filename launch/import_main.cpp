// vmoe_import: converts a public dataset into the HDF5 schema of
// datasets/README.md (output/train.h5, output/test.h5, optionally output/val.h5).
#include <gflags/gflags.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "core/check.h"
#include "datasets/copy_examples.h"
#include "datasets/dataset_info.h"
#include "datasets/importer.h"

DECLARE_bool(help);

DEFINE_string(format, "", "Input format: fashion_mnist, cifar10 or cifar100.");
DEFINE_string(input, "",
              "Directory with the downloaded files: the IDX files (fashion_mnist), "
              "data_batch_1..5.bin + test_batch.bin (cifar10) or train.bin + test.bin (cifar100).");
DEFINE_string(output, "", "Directory to write train.h5 and test.h5 into (created if missing).");
DEFINE_int64(validation_size, 0, "Move the last N training examples into val.h5, a held-out "
             "split (e.g. for the confusion matrix vmoe_superclass clusters); 0 = none.");

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "converts a dataset into the V-MoE HDF5 format.\n"
      "Usage: vmoe_import --format=fashion_mnist|cifar10|cifar100 --input=DIR --output=DIR");
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
      throw vmoe::Error("--format is required (fashion_mnist, cifar10 or cifar100)");
    if (FLAGS_input.empty()) throw vmoe::Error("--input is required (the directory to read)");
    if (FLAGS_output.empty()) throw vmoe::Error("--output is required (the directory to write)");
    if (FLAGS_validation_size < 0)
      throw vmoe::Error("--validation_size must be >= 0, got " +
                        std::to_string(FLAGS_validation_size));
    std::vector<vmoe::DatasetInfo> written =
        vmoe::import_dataset(FLAGS_format, FLAGS_input, FLAGS_output);
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
