#include "datasets/batch_reader.h"

#include <algorithm>

#include "core/check.h"
#include "core/h5_vlen.h"
#include "core/random.h"
#include "datasets/augment.h"
#include "datasets/crop_resize.h"
#include "datasets/image_codec.h"

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
      out_h_(options.image_height > 0 ? options.image_height : info.height),
      out_w_(options.image_width > 0 ? options.image_width : info.width),
      raw_image_bytes_(int64_t{info.height} * info.width * info.channels),
      out_image_floats_(int64_t{out_h_} * out_w_ * info.channels),
      shards_(info_, options.max_open_shards),
      pool_(options.threads) {}

void BatchReader::read_shard_rows(int shard, size_t begin, size_t end, FetchedBatch& f) {
  OpenShard& file = shards_.get(shard);
  const int64_t base = info_.shard_offsets[static_cast<size_t>(shard)];
  const int64_t k = info_.num_classes;
  local_rows_.clear();
  for (size_t i = begin; i < end; ++i) local_rows_.push_back(f.unique_rows[i] - base);
  if (info_.encoded) {
    const size_t before = f.encoded.size();
    h5::append_vlen_rows(file.images, local_rows_, f.encoded, f.encoded_offsets);
    bytes_read_ += static_cast<int64_t>(f.encoded.size() - before);
  } else {
    file.images.read_rows<uint8_t>(local_rows_, f.pixels.data() + begin * raw_image_bytes_);
    bytes_read_ += static_cast<int64_t>(end - begin) * raw_image_bytes_;
  }
  // Labels and super-classes from the shard's copies (read when it opened).
  for (size_t i = begin; i < end; ++i) {
    const size_t row = static_cast<size_t>(local_rows_[i - begin]);
    if (info_.sparse_labels) {
      uint8_t* hot = f.multi_hot.data() + i * k;
      std::fill(hot, hot + k, uint8_t{0});
      for (int64_t e = file.label_offsets[row]; e < file.label_offsets[row + 1]; ++e) {
        hot[file.label_values[static_cast<size_t>(e)]] = 1;
      }
    } else if (!info_.multi_label) {
      f.labels[i] = file.label_values[row];
    }
    if (info_.has_superclass) f.superclass[i] = file.superclasses[row];
  }
  if (info_.multi_label && !info_.sparse_labels) {
    file.labels.read_rows<uint8_t>(local_rows_, f.multi_hot.data() + begin * k);
  }
}

void BatchReader::fill_image(const FetchedBatch& f, int64_t position, int s, float* dst,
                             uint8_t* dst8) const {
  if (!info_.encoded) {
    const uint8_t* image = f.pixels.data() + s * raw_image_bytes_;
    if (options_.training && (options_.crop_padding > 0 || options_.flip)) {
      const Augmentation a = draw_augmentation(options_.seed, static_cast<uint64_t>(position),
                                               options_.crop_padding, options_.flip);
      if (dst8 != nullptr) {
        augment_image_u8(image, info_.height, info_.width, info_.channels, options_.crop_padding,
                         a, dst8);
      } else {
        augment_image(image, info_.height, info_.width, info_.channels, options_.crop_padding, a,
                      dst);
      }
    } else if (dst8 != nullptr) {
      std::copy_n(image, raw_image_bytes_, dst8);
    } else {
      scale_image(image, raw_image_bytes_, dst);
    }
    return;
  }
  const int64_t begin = f.encoded_offsets[static_cast<size_t>(s)];
  const int64_t example = f.unique_rows[static_cast<size_t>(s)];
  const int shard = info_.shard_of(example);
  std::string what = "example ";
  what += std::to_string(example - info_.shard_offsets[static_cast<size_t>(shard)]);
  what += " of ";
  what += info_.shards[static_cast<size_t>(shard)];
  const Image image =
      decode_image(f.encoded.data() + begin,
                   static_cast<size_t>(f.encoded_offsets[static_cast<size_t>(s) + 1] - begin),
                   info_.channels, what);
  const CropRect rect =
      options_.training
          ? inception_crop(options_.seed, static_cast<uint64_t>(position), image.height,
                           image.width, options_.min_area, options_.flip)
          : central_crop(image.height, image.width, out_h_, out_w_, options_.eval_crop_fraction);
  if (dst8 != nullptr) {
    crop_resize_u8(image, rect, out_h_, out_w_, dst8);
  } else {
    crop_resize_scale(image, rect, out_h_, out_w_, dst);
  }
}

void BatchReader::mixup(int64_t step, Batch& out) const {
  const float lambda = mixup_lambda(options_.seed, step, options_.mixup_alpha);
  const int64_t k = info_.num_classes, n = out_image_floats_;
  std::vector<float> a(static_cast<size_t>(options_.uint8_images ? 0 : n));
  out.soft_targets.resize(static_cast<size_t>(out.rows * k));
  out.mixup_lambda = lambda;  // 8-bit pixels: mixed on the device, after scaling
  for (int i = 0; i + 1 < out.rows; i += 2) {
    if (!options_.uint8_images) {
      float* x = out.images.data() + i * n;
      float* y = x + n;
      std::copy(x, x + n, a.begin());
      mix_images(x, y, lambda, n, x);
      mix_images(y, a.data(), lambda, n, y);
    }
    for (int r = 0; r < 2; ++r) {
      const uint8_t* own = out.multi_hot.data() + (i + r) * k;
      const uint8_t* other = out.multi_hot.data() + (i + 1 - r) * k;
      float* t = out.soft_targets.data() + (i + r) * k;
      for (int64_t c = 0; c < k; ++c) t[c] = lambda * own[c] + (1.0f - lambda) * other[c];
    }
  }
}

void BatchReader::fetch(int64_t step, FetchedBatch& f) {
  const int b = rows_;
  const int64_t n = info_.size, k = info_.num_classes;
  const int64_t eval_count = options_.rows.empty() ? n : static_cast<int64_t>(options_.rows.size());
  f.step = step;
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
  // Read each distinct example once, in dataset order, so runs coalesce and
  // each shard is visited once. A batch crossing an epoch boundary (or a row
  // list with repeats) may hold one example twice.
  std::sort(order_.begin(), order_.end());
  f.unique_rows.clear();
  f.slot.assign(b, -1);
  for (const auto& [example, j] : order_) {
    if (f.unique_rows.empty() || f.unique_rows.back() != example) f.unique_rows.push_back(example);
    f.slot[j] = static_cast<int>(f.unique_rows.size()) - 1;
  }
  const size_t u = f.unique_rows.size();
  if (!info_.encoded) f.pixels.resize(u * raw_image_bytes_);
  f.encoded.clear();
  f.encoded_offsets.assign(1, 0);
  f.multi_hot.resize(info_.multi_label ? u * k : 0);
  f.labels.resize(info_.multi_label ? 0 : u);
  f.superclass.resize(info_.has_superclass ? u : 0);
  for (size_t begin = 0; begin < u;) {
    const int shard = info_.shard_of(f.unique_rows[begin]);
    const int64_t shard_end = info_.shard_offsets[static_cast<size_t>(shard) + 1];
    size_t end = begin + 1;
    while (end < u && f.unique_rows[end] < shard_end) ++end;
    read_shard_rows(shard, begin, end, f);
    begin = end;
  }
}

void BatchReader::assemble(const FetchedBatch& f, Batch& out, const std::function<void()>& also) {
  const int b = rows_;
  const int64_t k = info_.num_classes;
  out.step = f.step;
  out.rows = b;
  out.mixup_lambda = -1.0f;
  // Every real row's image is written below; only padding rows are zeroed.
  const bool u8 = options_.uint8_images;
  if (u8 && out.pixels.get_allocator().backend != options_.pixel_memory)
    out.pixels = PixelBuffer(HostAllocator<uint8_t>(options_.pixel_memory));
  out.images.resize(u8 ? 0 : static_cast<size_t>(b * out_image_floats_));
  out.pixels.resize(u8 ? static_cast<size_t>(b * out_image_floats_) : 0);
  out.labels.assign(info_.multi_label ? 0 : b, 0);
  out.multi_hot.assign(info_.multi_label ? b * k : 0, 0);
  out.mask.assign(b, 0);
  out.superclass.assign(info_.has_superclass ? b : 0, 0);
  out.index.assign(b, -1);
  out.soft_targets.clear();
  for (int j = 0; j < b; ++j) {
    const int s = f.slot[j];
    if (s < 0) {
      if (u8) {
        std::fill_n(out.pixels.data() + j * out_image_floats_, out_image_floats_, uint8_t{0});
      } else {
        std::fill_n(out.images.data() + j * out_image_floats_, out_image_floats_, 0.0f);
      }
      continue;
    }
    out.mask[j] = 1;
    out.index[j] = f.unique_rows[s];
    if (info_.multi_label) {
      std::copy_n(f.multi_hot.data() + s * k, k, out.multi_hot.data() + j * k);
    } else {
      out.labels[j] = f.labels[s];
    }
    if (info_.has_superclass) out.superclass[j] = f.superclass[s];
  }
  const int64_t first = f.step * options_.batch_size + int64_t{options_.rank} * b;
  const int64_t extra = also ? 1 : 0;  // task 0: `also`; then one per row
  pool_.parallel_for(b + extra, [&](int64_t task) {
    if (task < extra) return also();
    const int64_t j = task - extra;
    const int s = f.slot[static_cast<size_t>(j)];
    if (s < 0) return;
    fill_image(f, first + j, s, u8 ? nullptr : out.images.data() + j * out_image_floats_,
               u8 ? out.pixels.data() + j * out_image_floats_ : nullptr);
  });
  if (options_.training && options_.mixup_alpha > 0) mixup(f.step, out);
}

void BatchReader::read(int64_t step, Batch& out) {
  fetch(step, own_);
  assemble(own_, out);
}

}  // namespace vmoe
