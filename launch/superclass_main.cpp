// vmoe_superclass: derives super-classes for Mobile V-MoE's image router from
// a trained dense model's confusion matrix (the confusion.csv vmoe_train
// writes for its --eval_data; use a held-out split, e.g. vmoe_import
// --validation_size) and writes /superclass into dataset files.
#include <gflags/gflags.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "core/check.h"
#include "datasets/copy_examples.h"
#include "datasets/dataset_info.h"
#include "datasets/superclass.h"
#include "launch/flag_lists.h"

DECLARE_bool(help);

DEFINE_string(confusion, "", "confusion.csv of a trained dense model (from its run directory).");
DEFINE_int32(num_superclasses, 0, "Super-classes to make: the number of experts, E.");
DEFINE_string(datasets, "", "Comma-separated dataset files to label with /superclass "
              "(rewritten in place, atomically).");

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "clusters a confusion matrix into super-classes and writes /superclass.\n"
      "Usage: vmoe_superclass --confusion=RUN/confusion.csv --num_superclasses=E "
      "--datasets=train.h5,val.h5,test.h5");
  gflags::ParseCommandLineNonHelpFlags(&argc, &argv, true);
  if (FLAGS_help) {
    gflags::ShowUsageWithFlagsRestrict(argv[0], "superclass_main");
    return 0;
  }
  gflags::HandleCommandLineHelpFlags();
  try {
    if (argc > 1) throw vmoe::Error(std::string("unexpected argument '") + argv[1] + "'");
    VMOE_CHECK(!FLAGS_confusion.empty(), "--confusion is required (a confusion.csv)");
    VMOE_CHECK(FLAGS_num_superclasses > 0, "--num_superclasses must be positive, got ",
               FLAGS_num_superclasses);
    const std::vector<std::string> files = vmoe::split_commas(FLAGS_datasets, true);
    VMOE_CHECK(!files.empty(), "--datasets is required (the files to label)");
    const vmoe::ConfusionMatrix m = vmoe::read_confusion_csv(FLAGS_confusion);
    // Check every file before changing any.
    for (const std::string& f : files) {
      const vmoe::DatasetInfo info = vmoe::inspect_dataset(f);
      VMOE_CHECK(info.class_names == m.class_names, f, ": its classes differ from those of ",
                 FLAGS_confusion);
    }
    const std::vector<int32_t> group = vmoe::cluster_confusion(m, FLAGS_num_superclasses);
    for (int g = 0; g < FLAGS_num_superclasses; ++g) {
      std::string members;
      for (size_t c = 0; c < group.size(); ++c)
        if (group[c] == g) members += (members.empty() ? "" : ", ") + m.class_names[c];
      std::printf("super-class %d: %s\n", g, members.c_str());
    }
    for (const std::string& f : files) {
      const int64_t n = vmoe::copy_examples(f, f, {.class_to_superclass = &group});
      std::printf("wrote /superclass into %s (%lld examples)\n", f.c_str(),
                  static_cast<long long>(n));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmoe_superclass: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
