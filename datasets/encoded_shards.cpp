#include "datasets/encoded_shards.h"

#include <cstdio>
#include <filesystem>

#include "core/check.h"
#include "datasets/dataset_info.h"

namespace vmoe {

std::string encoded_shard_path(const std::string& dir, const std::string& split, int64_t shard,
                               int64_t shards) {
  char name[96];
  std::snprintf(name, sizeof name, "%s-%05lld-of-%05lld.h5", split.c_str(),
                static_cast<long long>(shard), static_cast<long long>(shards));
  return (std::filesystem::path(dir) / name).string();
}

bool encoded_shard_complete(const std::string& path, int64_t planned, const DatasetSpec& spec) {
  if (!std::filesystem::exists(path)) return false;
  const DatasetInfo info = inspect_dataset(path);
  VMOE_CHECK(info.encoded && !info.multi_label && info.num_classes == spec.num_classes &&
                 info.height == spec.height && info.width == spec.width &&
                 info.channels == spec.channels && info.size <= planned,
             path,
             " exists but was written by another import (other classes, size or files); "
             "delete it or choose another --output");
  return true;
}

void EncodedShardWriter::add(const uint8_t* bytes, size_t size, int32_t label) {
  packed_.insert(packed_.end(), bytes, bytes + size);
  offsets_.push_back(static_cast<int64_t>(packed_.size()));
  labels_.push_back(label);
  if (labels_.size() == 256) flush();  // bounded memory whatever the shard size
}

void EncodedShardWriter::flush() {
  if (labels_.empty()) return;
  const auto n = static_cast<int64_t>(labels_.size());
  writer_.append({.count = n,
                  .images = packed_.data(),
                  .image_offsets = offsets_.data(),
                  .labels = labels_.data()});
  written_ += n;
  packed_.clear();
  labels_.clear();
  offsets_.assign(1, 0);
}

int64_t EncodedShardWriter::finish() {
  flush();
  writer_.finish();
  return written_;
}

}  // namespace vmoe
