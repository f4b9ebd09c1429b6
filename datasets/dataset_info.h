// What a dataset file holds, and the schema validation that establishes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmoe {

struct DatasetInfo {
  std::string path;
  int64_t size = 0;  // N, number of examples
  int height = 0, width = 0, channels = 0;
  int64_t num_classes = 0;
  bool multi_label = false;  // /labels is uint8 multi-hot [N, num_classes]
  bool has_superclass = false;
  std::vector<std::string> class_names;
};

// Opens `path` and checks it against the schema in datasets/README.md,
// including every label value (streamed in blocks, so any N is fine).
// Throws vmoe::Error naming the file, the dataset and what is wrong.
DatasetInfo inspect_dataset(const std::string& path);

}  // namespace vmoe
