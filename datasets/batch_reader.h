// Assembles one rank's rows of a global batch: which examples (data order),
// reading just those rows from their shard files, decoding (encoded images),
// augmentation, scaling and mixup. Used by the Loader, on its prefetch thread;
// the per-image work runs on a WorkerPool of LoaderOptions::threads threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "datasets/dataset_info.h"
#include "datasets/loader.h"
#include "datasets/shard_cache.h"
#include "datasets/worker_pool.h"

namespace vmoe {

// The example at global stream position p of a training run: epoch p / n,
// shuffled over all shards by RandomPermutation(n, seed, kDataOrder * 1000003 + epoch).
int64_t training_example(uint64_t seed, int64_t n, int64_t position);

class BatchReader {
 public:
  // `options` must already be validated (see Loader).
  BatchReader(const LoaderOptions& options, const DatasetInfo& info);

  // Fills `out` (reusing its storage) with global batch `step`.
  void read(int64_t step, Batch& out);
  int64_t bytes_read() const { return bytes_read_.load(); }

 private:
  // Reads images, labels and superclasses of unique_rows_[begin, end), all in
  // shard `shard`, into the scratch buffers at slot `begin`.
  void read_shard_rows(int shard, size_t begin, size_t end);
  // Writes row j's image into `dst` from its example in slot s.
  void fill_image(int64_t position, int s, float* dst) const;
  void mixup(int64_t step, Batch& out) const;

  LoaderOptions options_;
  DatasetInfo info_;
  int rows_ = 0;  // per rank
  int out_h_ = 0, out_w_ = 0;
  int64_t raw_image_bytes_ = 0, out_image_floats_ = 0;
  ShardCache shards_;
  WorkerPool pool_;
  std::atomic<int64_t> bytes_read_{0};
  // Scratch for one batch, reused so memory stays flat. Slot s holds
  // unique_rows_[s] (sorted global example indices).
  std::vector<std::pair<int64_t, int>> order_;
  std::vector<int64_t> unique_rows_, local_rows_;
  std::vector<int> slot_;
  std::vector<uint8_t> pixels_, encoded_, shard_bytes_, multi_hot_;
  std::vector<int64_t> encoded_offsets_, shard_offsets_;
  std::vector<int32_t> labels_buffer_, superclass_buffer_, ids_;
};

}  // namespace vmoe
