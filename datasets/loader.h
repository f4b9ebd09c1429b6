// The batch loader: reads global batches of a dataset file (one rank's share),
// shuffled and augmented for training or sequential for evaluation, prepared
// ahead on a background thread.
//
// Training results do not depend on the number of ranks: row j of rank r in
// global batch `step` is global stream position p = step*batch_size + r*b + j
// (b = batch_size / world). Position p holds example perm_e(p % N) of epoch
// e = p / N, where perm_e = RandomPermutation(N, seed, kDataOrder * 1000003 + e),
// and its augmentation (crop offsets, flip) is drawn from
// philox4x32(p, kAugment, seed) alone.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "datasets/dataset_info.h"
#include "datasets/host_allocator.h"

namespace vmoe {

struct LoaderOptions {
  std::string path;
  int64_t batch_size = 0;   // GLOBAL batch size (summed over ranks)
  int rank = 0, world = 1;  // this rank holds rows [rank*b, (rank+1)*b) of each global batch,
                            // b = batch_size/world (error unless divisible)
  bool training = true;     // true: endless shuffled stream crossing epoch boundaries,
                            // augmentation on. false: one sequential pass over the file,
                            // last global batch padded (mask=0)
  uint64_t seed = 0;        // keys the data order and the augmentation
  int crop_padding = 0;     // training: zero-pad (pixel value 0) by this many pixels, then
                            // random crop back to HxW; 0 = off
  bool flip = false;        // training: random horizontal flip with probability 1/2
  int prefetch = 2;         // batches prepared ahead on a background thread (0: none, read
                            // synchronously in next())
  int64_t start_step = 0;   // resume: index of the first global batch to produce
  std::vector<int64_t> rows = {};  // evaluation: the file rows to read, in this order (repeats
                              // allowed); empty = every row in file order

  // Encoded (JPEG/PNG) datasets. Training: inception crop (area fraction in
  // [min_area, 1], aspect 3/4..4/3, drawn per stream position) resized to the
  // output size, then flip if `flip`. Evaluation: resize so the crop of
  // `eval_crop_fraction` of the shorter side fills the output, central crop.
  int image_height = 0, image_width = 0;  // output size; 0 = the dataset's attributes
  float min_area = 0.05f;
  float eval_crop_fraction = 0.875f;
  int threads = 1;           // threads decoding and augmenting each batch (>= 1)
  int max_open_shards = 16;  // shard files kept open at once (least recently used closed)
  // Training, multi-label data: mixup of rows 2i and 2i+1 of each global
  // batch with lambda ~ Beta(alpha, alpha) per batch; fills Batch::soft_targets.
  // 0 = off. Needs an even number of rows per rank.
  float mixup_alpha = 0.0f;
  // Images as 8-bit pixels (Batch::pixels, resized and cropped but not
  // scaled or mixed: a GPU does that after the copy, a quarter of the bytes)
  // instead of [-1, 1] floats (Batch::images, the CPU backend's input).
  bool uint8_images = false;
  // Where Batch::pixels live (a GPU backend's pinned memory); null: the heap.
  Backend* pixel_memory = nullptr;
};

struct Batch {
  int64_t step = 0;                 // global batch index
  int rows = 0;                     // rows held by this rank (b)
  std::vector<float> images;        // [rows, H, W, C] scaled to [-1, 1] as x/127.5-1 (or empty)
  PixelBuffer pixels;               // uint8_images: [rows, H, W, C] 8-bit, unscaled (else empty)
  float mixup_lambda = -1.0f;       // uint8_images with mixup: mix rows 2i, 2i+1 with it
  std::vector<int32_t> labels;      // [rows] (single-label datasets; 0 for padding rows)
  std::vector<uint8_t> multi_hot;   // [rows, num_classes] (multi-label datasets only, else empty)
  std::vector<uint8_t> mask;        // [rows] 1 = real example, 0 = padding
  std::vector<int32_t> superclass;  // [rows] when the file has /superclass, else empty
  std::vector<int64_t> index;       // [rows] example index in the dataset, -1 for padding
  std::vector<float> soft_targets;  // [rows, num_classes] mixup targets (mixup only, else empty)
};

class Loader {
 public:
  // Inspects and validates the file, then starts the prefetch thread.
  explicit Loader(const LoaderOptions& options);
  // Stops the prefetch thread (also when the consumer stopped early).
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  const DatasetInfo& info() const;
  // Training: always true. Eval: false after the last batch. Rethrows errors
  // raised while preparing batches.
  bool next(Batch& out);
  // Eval: ceil(N / batch_size) (identical on every rank); training: batches
  // per epoch, N / batch_size.
  int64_t num_batches() const;
  // Image bytes (pixels or encoded) read so far (by the prefetch thread too).
  int64_t bytes_read() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vmoe
