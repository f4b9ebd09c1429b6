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

}  // namespace vmoe
