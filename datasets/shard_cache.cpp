#include "datasets/shard_cache.h"

#include "core/check.h"
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
  open_.push_front(std::move(shard));
  return open_.front();
}

}  // namespace vmoe
