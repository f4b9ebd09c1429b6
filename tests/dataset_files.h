// Helpers for the dataset tests: scratch directories and small
// synthetic dataset files with predictable pixels.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/h5.h"
#include "datasets/dataset_info.h"
#include "datasets/dataset_writer.h"
#include "datasets/image_codec.h"
#include "datasets/synthetic_images.h"

namespace vmoe::testing {

// A fresh directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = std::string("vmoe_") + (test ? test->name() : "test") + "_" +
                             std::to_string(getpid()) + "_" + std::to_string(counter++);
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The pixel every synthetic file stores at (example, y, x, channel).
inline uint8_t synthetic_pixel(int64_t example, int y, int x, int c) {
  return static_cast<uint8_t>((example * 31 + y * 7 + x * 3 + c * 101) & 255);
}
inline int32_t synthetic_label(int64_t example, int64_t num_classes) {
  return static_cast<int32_t>((example * 7 + 3) % num_classes);
}
inline int32_t synthetic_superclass(int64_t example) {
  return static_cast<int32_t>(example % 5);
}

struct SyntheticOptions {
  int64_t size = 100;
  int height = 4, width = 5, channels = 3;
  int64_t num_classes = 10;
  bool multi_label = false;
  bool has_superclass = false;
};

// Writes a valid file whose example i holds synthetic_pixel(i, ...) and
// synthetic_label(i, ...) (multi-hot: that class and the next one).
inline std::string write_synthetic(const std::string& path, const SyntheticOptions& o) {
  DatasetSpec spec;
  spec.height = o.height;
  spec.width = o.width;
  spec.channels = o.channels;
  spec.num_classes = o.num_classes;
  spec.multi_label = o.multi_label;
  spec.has_superclass = o.has_superclass;
  for (int64_t k = 0; k < o.num_classes; ++k)
    spec.class_names.push_back("class" + std::to_string(k));
  DatasetWriter writer(path, spec);
  const int64_t block = 37;  // deliberately not a chunk multiple
  const int64_t image = int64_t{o.height} * o.width * o.channels;
  std::vector<uint8_t> pixels, multi_hot;
  std::vector<int32_t> labels, superclass;
  for (int64_t first = 0; first < o.size; first += block) {
    const int64_t n = std::min(block, o.size - first);
    pixels.assign(n * image, 0);
    labels.assign(n, 0);
    multi_hot.assign(n * o.num_classes, 0);
    superclass.assign(n, 0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t e = first + i;
      for (int y = 0; y < o.height; ++y)
        for (int x = 0; x < o.width; ++x)
          for (int c = 0; c < o.channels; ++c)
            pixels[((i * o.height + y) * o.width + x) * o.channels + c] =
                synthetic_pixel(e, y, x, c);
      labels[i] = synthetic_label(e, o.num_classes);
      multi_hot[i * o.num_classes + labels[i]] = 1;
      multi_hot[i * o.num_classes + (labels[i] + 1) % o.num_classes] = 1;
      superclass[i] = synthetic_superclass(e);
    }
    writer.append({.count = n,
                   .images = pixels.data(),
                   .labels = o.multi_label ? nullptr : labels.data(),
                   .multi_hot = o.multi_label ? multi_hot.data() : nullptr,
                   .superclass = o.has_superclass ? superclass.data() : nullptr});
  }
  writer.finish();
  return path;
}

// Everything an imported file holds (single-label), for exact comparisons.
struct Split {
  DatasetInfo info;
  std::vector<uint8_t> images;
  std::vector<int32_t> labels;
};

inline Split read_split(const std::string& path) {
  Split s{inspect_dataset(path), {}, {}};
  const h5::File file = h5::File::open_read(path);
  s.images.resize(s.info.size * s.info.height * s.info.width * s.info.channels);
  s.labels.resize(s.info.size);
  file.dataset("/images").read_rows(0, s.info.size, s.images.data());
  file.dataset("/labels").read_rows(0, s.info.size, s.labels.data());
  return s;
}

// Encoded shards `dir/prefix-<s>.h5` of vmoe_synth's synthetic examples
// (PNG, so decoding is lossless), shard s holding sizes[s] consecutive
// examples; returns the glob matching them.
inline std::string write_encoded_shards(const std::string& dir, const std::vector<int64_t>& sizes,
                                        const SyntheticSpec& synth,
                                        const std::string& prefix = "train") {
  DatasetSpec spec{.height = synth.height, .width = synth.width, .channels = synth.channels,
                   .encoded = true, .num_classes = synth.num_classes, .multi_label = true,
                   .sparse_labels = true, .class_names = {}};
  for (int64_t c = 0; c < synth.num_classes; ++c) spec.class_names.push_back(std::to_string(c));
  int64_t index = 0;
  for (size_t s = 0; s < sizes.size(); ++s) {
    DatasetWriter writer(dir + "/" + prefix + "-" + std::to_string(s) + ".h5", spec);
    std::vector<uint8_t> bytes;
    std::vector<int32_t> ids;
    std::vector<int64_t> image_offsets{0}, label_offsets{0};
    for (int64_t i = 0; i < sizes[s]; ++i, ++index) {
      const std::vector<int32_t> labels = synthetic_labels(synth, index);
      const std::vector<uint8_t> png = encode_png(synthetic_image(synth, index, labels));
      bytes.insert(bytes.end(), png.begin(), png.end());
      ids.insert(ids.end(), labels.begin(), labels.end());
      image_offsets.push_back(static_cast<int64_t>(bytes.size()));
      label_offsets.push_back(static_cast<int64_t>(ids.size()));
    }
    writer.append({.count = sizes[s], .images = bytes.data(), .image_offsets = image_offsets.data(),
                   .label_ids = ids.data(), .label_offsets = label_offsets.data()});
    writer.finish();
  }
  return dir + "/" + prefix + "-*.h5";
}

}  // namespace vmoe::testing
