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
  // The small per-row data, read whole when the shard opens: one read, not
  // one per batch row (a vlen label row loads a global-heap collection that
  // the images then evict from HDF5's cache, so each cost as much as an
  // image). Dense multi-hot labels ([rows, classes] bytes) are not kept.
  std::vector<int32_t> label_values;   // single-label: [rows]; sparse: ids back to back
  std::vector<int64_t> label_offsets;  // sparse: [rows + 1] into label_values
  std::vector<int32_t> superclasses;   // [rows] when the dataset has /superclass
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
