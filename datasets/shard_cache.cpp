#include "datasets/shard_cache.h"

#include <numeric>

#include "core/check.h"
#include "core/h5_vlen.h"
#include "datasets/schema.h"

namespace vmoe {

ShardCache::ShardCache(const DatasetInfo& info, int capacity) : info_(&info), capacity_(capacity) {
  VMOE_CHECK(capacity >= 1, "loader for ", info.path, ": max_open_shards must be >= 1, got ",
             capacity);
}

OpenShard& ShardCache::get(int index) {
  for (auto it = open_.begin(); it != open_.end(); ++it) {
    if (it->index != index) continue;
    open_.splice(open_.begin(), open_, it);
    return open_.front();
  }
  if (static_cast<int>(open_.size()) >= capacity_) open_.pop_back();
  OpenShard shard;
  shard.index = index;
  shard.file = h5::File::open_read(info_->shards[static_cast<size_t>(index)]);
  shard.images = shard.file.dataset(schema::kImages);
  shard.labels = shard.file.dataset(schema::kLabels);
  if (info_->has_superclass) shard.superclass = shard.file.dataset(schema::kSuperclass);
  const size_t at = static_cast<size_t>(index);
  const int64_t rows = info_->shard_offsets[at + 1] - info_->shard_offsets[at];
  if (info_->sparse_labels) {
    std::vector<int64_t> all(static_cast<size_t>(rows));
    std::iota(all.begin(), all.end(), int64_t{0});
    h5::read_vlen_rows(shard.labels, all, shard.label_values, shard.label_offsets);
  } else if (!info_->multi_label) {
    shard.label_values.resize(static_cast<size_t>(rows));
    shard.labels.read_rows<int32_t>(0, rows, shard.label_values.data());
  }
  if (info_->has_superclass) {
    shard.superclasses.resize(static_cast<size_t>(rows));
    shard.superclass.read_rows<int32_t>(0, rows, shard.superclasses.data());
  }
  open_.push_front(std::move(shard));
  return open_.front();
}

}  // namespace vmoe
