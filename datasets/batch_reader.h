// Assembles one rank's rows of a global batch: which examples (data order),
// reading just those rows from the file, augmentation and scaling. Used by
// the Loader, on its prefetch thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "core/h5.h"
#include "datasets/dataset_info.h"
#include "datasets/loader.h"

namespace vmoe {

// The file row at global stream position p of a training run: epoch p / n,
// shuffled by RandomPermutation(n, seed, kDataOrder * 1000003 + epoch).
int64_t training_example(uint64_t seed, int64_t n, int64_t position);

class BatchReader {
 public:
  // `options` must already be validated (see Loader).
  BatchReader(const LoaderOptions& options, const DatasetInfo& info);

  // Fills `out` (reusing its storage) with global batch `step`.
  void read(int64_t step, Batch& out);
  int64_t bytes_read() const { return bytes_read_.load(); }

 private:
  LoaderOptions options_;
  DatasetInfo info_;
  int rows_ = 0;  // per rank
  int64_t image_bytes_ = 0;
  h5::File file_;
  h5::Dataset images_, labels_, superclass_;
  std::atomic<int64_t> bytes_read_{0};
  // Scratch for one batch, reused so memory stays flat.
  std::vector<std::pair<int64_t, int>> order_;
  std::vector<int64_t> unique_rows_;
  std::vector<int> slot_;
  std::vector<uint8_t> pixels_, multi_hot_;
  std::vector<int32_t> labels_buffer_, superclass_buffer_;
};

}  // namespace vmoe
