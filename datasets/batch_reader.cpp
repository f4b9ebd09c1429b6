#include "datasets/batch_reader.h"

#include <algorithm>

#include "core/random.h"
#include "datasets/augment.h"
#include "datasets/schema.h"

namespace vmoe {

int64_t training_example(uint64_t seed, int64_t n, int64_t position) {
  const uint64_t epoch = static_cast<uint64_t>(position / n);
  const RandomPermutation permutation(static_cast<uint64_t>(n), seed,
                                      static_cast<uint64_t>(Stream::kDataOrder) * 1000003 + epoch);
  return static_cast<int64_t>(permutation(static_cast<uint64_t>(position % n)));
}

BatchReader::BatchReader(const LoaderOptions& options, const DatasetInfo& info)
    : options_(options),
      info_(info),
      rows_(static_cast<int>(options.batch_size / options.world)),
      image_bytes_(int64_t{info.height} * info.width * info.channels) {
  file_ = h5::File::open_read(info.path);
  images_ = file_.dataset(schema::kImages);
  labels_ = file_.dataset(schema::kLabels);
  if (info.has_superclass) superclass_ = file_.dataset(schema::kSuperclass);
}

void BatchReader::read(int64_t step, Batch& out) {
  const int b = rows_;
  const int64_t n = info_.size, k = info_.num_classes;
  const int64_t eval_count = options_.rows.empty() ? n : static_cast<int64_t>(options_.rows.size());
  out.step = step;
  out.rows = b;
  out.images.assign(b * image_bytes_, 0.0f);
  out.labels.assign(info_.multi_label ? 0 : b, 0);
  out.multi_hot.assign(info_.multi_label ? b * k : 0, 0);
  out.mask.assign(b, 0);
  out.superclass.assign(info_.has_superclass ? b : 0, 0);
  out.index.assign(b, -1);

  // Which example each row holds; padding rows (eval past the end) hold none.
  const int64_t first = step * options_.batch_size + int64_t{options_.rank} * b;
  order_.clear();
  for (int j = 0; j < b; ++j) {
    const int64_t p = first + j;
    if (options_.training) {
      order_.emplace_back(training_example(options_.seed, n, p), j);
    } else if (p < eval_count) {
      order_.emplace_back(options_.rows.empty() ? p : options_.rows[static_cast<size_t>(p)], j);
    }
  }
  // Read each distinct row once, in file order, so runs coalesce. A batch
  // crossing an epoch boundary (or a row list with repeats) may hold one
  // example twice.
  std::sort(order_.begin(), order_.end());
  unique_rows_.clear();
  slot_.assign(b, -1);
  for (const auto& [example, j] : order_) {
    if (unique_rows_.empty() || unique_rows_.back() != example) unique_rows_.push_back(example);
    slot_[j] = static_cast<int>(unique_rows_.size()) - 1;
  }
  const int64_t u = static_cast<int64_t>(unique_rows_.size());
  pixels_.resize(u * image_bytes_);
  images_.read_rows<uint8_t>(unique_rows_, pixels_.data());
  bytes_read_ += u * image_bytes_;
  if (info_.multi_label) {
    multi_hot_.resize(u * k);
    labels_.read_rows<uint8_t>(unique_rows_, multi_hot_.data());
  } else {
    labels_buffer_.resize(u);
    labels_.read_rows<int32_t>(unique_rows_, labels_buffer_.data());
  }
  if (info_.has_superclass) {
    superclass_buffer_.resize(u);
    superclass_.read_rows<int32_t>(unique_rows_, superclass_buffer_.data());
  }

  const bool augment = options_.training && (options_.crop_padding > 0 || options_.flip);
  for (int j = 0; j < b; ++j) {
    const int s = slot_[j];
    if (s < 0) continue;
    out.mask[j] = 1;
    out.index[j] = unique_rows_[s];
    if (info_.multi_label) {
      std::copy_n(multi_hot_.data() + s * k, k, out.multi_hot.data() + j * k);
    } else {
      out.labels[j] = labels_buffer_[s];
    }
    if (info_.has_superclass) out.superclass[j] = superclass_buffer_[s];
    const uint8_t* image = pixels_.data() + s * image_bytes_;
    float* dst = out.images.data() + j * image_bytes_;
    if (augment) {
      const Augmentation a = draw_augmentation(options_.seed, static_cast<uint64_t>(first + j),
                                               options_.crop_padding, options_.flip);
      augment_image(image, info_.height, info_.width, info_.channels, options_.crop_padding, a,
                    dst);
    } else {
      scale_image(image, image_bytes_, dst);
    }
  }
}

}  // namespace vmoe
