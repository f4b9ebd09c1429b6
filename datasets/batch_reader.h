// Assembles one rank's rows of a global batch: which examples (data order),
// reading just those rows from their shard files, decoding (encoded images),
// augmentation, scaling and mixup. Used by the Loader on its prefetch thread;
// the per-image work and the next batch's reads run on a WorkerPool of
// LoaderOptions::threads threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "datasets/dataset_info.h"
#include "datasets/loader.h"
#include "datasets/shard_cache.h"
#include "datasets/worker_pool.h"

namespace vmoe {

// The example at global stream position p of a training run: epoch p / n,
// shuffled over all shards by RandomPermutation(n, seed, kDataOrder * 1000003 + epoch).
int64_t training_example(uint64_t seed, int64_t n, int64_t position);

// What one batch needs from the shard files, before any decoding: which
// distinct examples (sorted, so reads coalesce), the row each batch row
// takes, their image bytes and labels. Reused from batch to batch.
struct FetchedBatch {
  int64_t step = -1;
  std::vector<int> slot;                  // per batch row: index into unique_rows, -1 = padding
  std::vector<int64_t> unique_rows;       // sorted global example indices
  std::vector<uint8_t> pixels, encoded;   // raw [u, H, W, C], or encoded bytes back to back
  std::vector<int64_t> encoded_offsets;   // [u + 1]
  std::vector<uint8_t> multi_hot;         // [u, classes]
  std::vector<int32_t> labels, superclass;  // [u]
};

class BatchReader {
 public:
  // `options` must already be validated (see Loader).
  BatchReader(const LoaderOptions& options, const DatasetInfo& info);

  // The two stages of a batch. fetch() reads global batch `step`'s rows from
  // their shards (HDF5: one thread at a time); assemble() decodes, augments
  // and scales them on the worker pool into `out`, reusing its storage, and
  // runs `also` (e.g. the next batch's fetch) as one more task on the pool,
  // first, so that the reads overlap the decoding without a thread of their
  // own competing for the cores.
  void fetch(int64_t step, FetchedBatch& f);
  void assemble(const FetchedBatch& f, Batch& out, const std::function<void()>& also = {});
  // Both, on the calling thread.
  void read(int64_t step, Batch& out);
  int64_t bytes_read() const { return bytes_read_.load(); }

 private:
  // Reads images, labels and superclasses of f.unique_rows[begin, end), all
  // in shard `shard`, into f at slot `begin`.
  void read_shard_rows(int shard, size_t begin, size_t end, FetchedBatch& f);
  // Writes the image of slot s of f, at stream position `position`, into
  // `dst` (floats in [-1, 1]) or `dst8` (8-bit pixels): one of them is null.
  void fill_image(const FetchedBatch& f, int64_t position, int s, float* dst,
                  uint8_t* dst8) const;
  void mixup(int64_t step, Batch& out) const;

  LoaderOptions options_;
  DatasetInfo info_;
  int rows_ = 0;  // per rank
  int out_h_ = 0, out_w_ = 0;
  int64_t raw_image_bytes_ = 0, out_image_floats_ = 0;
  ShardCache shards_;
  WorkerPool pool_;
  std::atomic<int64_t> bytes_read_{0};
  // fetch()'s scratch.
  std::vector<std::pair<int64_t, int>> order_;
  std::vector<int64_t> local_rows_;
  FetchedBatch own_;  // read()'s
};

}  // namespace vmoe
