// Streams examples into a new dataset file in the schema of datasets/README.md.
//
// The file is written under `path + ".partial"` and renamed to `path` only by
// finish(), so an interrupted import never leaves a file that looks complete.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vmoe {

struct DatasetSpec {
  int height = 0, width = 0, channels = 0;  // encoded: the size the loader produces by default
  bool encoded = false;                  // images are JPEG/PNG bytes (vlen uint8 [N])
  int64_t num_classes = 0;
  bool multi_label = false;              // labels are uint8 multi-hot [N, num_classes], or
  bool sparse_labels = false;            // (with multi_label) vlen int32 class ids [N]
  bool has_superclass = false;           // also write /superclass
  std::vector<std::string> class_names;  // num_classes entries
};

// One block of examples to append; the pointers the spec needs must be set.
struct ExampleBlock {
  int64_t count = 0;
  const uint8_t* images = nullptr;      // [count, H, W, C], or encoded bytes back to back:
  const int64_t* image_offsets = nullptr;  // encoded: [count + 1], image i is
                                           // images[image_offsets[i], image_offsets[i + 1])
  const int32_t* labels = nullptr;      // [count], single-label datasets
  const uint8_t* multi_hot = nullptr;   // [count, num_classes], dense multi-label datasets
  const int32_t* label_ids = nullptr;   // sparse multi-label: class ids back to back,
  const int64_t* label_offsets = nullptr;  // [count + 1] as image_offsets
  const int32_t* superclass = nullptr;  // [count], when spec.has_superclass
};

class DatasetWriter {
 public:
  DatasetWriter(const std::string& path, const DatasetSpec& spec);
  // Without finish(), removes the partial file.
  ~DatasetWriter();
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  // Validates the labels (range, 0/1) and appends the block.
  void append(const ExampleBlock& block);
  // Writes the attributes, closes the file and renames it to path().
  void finish();

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }

 private:
  struct Files;
  std::string path_;
  std::string partial_path_;
  DatasetSpec spec_;
  int64_t size_ = 0;
  bool finished_ = false;
  std::unique_ptr<Files> files_;
};

}  // namespace vmoe
