// The open files of a sharded dataset, at most `capacity` at a time (least
// recently used closed first): a dataset of thousands of shards keeps its
// file handles and HDF5 caches bounded.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <vector>

#include "core/h5.h"
#include "datasets/dataset_info.h"

namespace vmoe {

struct OpenShard {
  int index = -1;  // into DatasetInfo::shards
  h5::File file;
  h5::Dataset images, labels, superclass;
};

class ShardCache {
 public:
  ShardCache(const DatasetInfo& info, int capacity);
  // The open shard `index`, opening it (and closing the least recently used
  // one if full). The reference is valid until the next call.
  OpenShard& get(int index);

 private:
  const DatasetInfo* info_;
  int capacity_;
  std::list<OpenShard> open_;  // most recently used first
};

}  // namespace vmoe
