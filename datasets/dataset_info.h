// What a dataset file holds, and the schema validation that establishes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmoe {

// What a dataset holds: one file or many shard files of the same schema,
// seen as one sequence of examples (shard 0's, then shard 1's, ...).
struct DatasetInfo {
  std::string path;                    // the dataset as given (file, list or glob)
  std::vector<std::string> shards;     // its files, in order
  std::vector<int64_t> shard_offsets;  // shards.size() + 1 entries: shard s holds examples
                                       // [shard_offsets[s], shard_offsets[s + 1])
  int64_t size = 0;  // N, number of examples over all shards
  // Raw images: their size. Encoded images: the size the loader produces by
  // default (attributes image_height/width/channels), whatever each image's own.
  int height = 0, width = 0, channels = 0;
  bool encoded = false;  // /images holds JPEG/PNG bytes (vlen uint8), not pixels
  int64_t num_classes = 0;
  bool multi_label = false;    // multi-hot labels: uint8 [N, num_classes] or sparse ids
  bool sparse_labels = false;  // /labels is vlen int32: each example's class ids
  bool has_superclass = false;
  std::vector<std::string> class_names;

  // The shard holding example `index` (binary search over shard_offsets).
  int shard_of(int64_t index) const;
};

// The files of a dataset argument: a path, a glob ("data/train-*.h5", sorted)
// or a comma-separated list of either. Errors name a glob matching nothing.
std::vector<std::string> expand_dataset_files(const std::string& spec);

// Expands `spec`, opens every file and checks it against the schema in
// datasets/README.md, including every label value (streamed in blocks, so any
// N is fine), and checks that all shards agree on image size, encoding, labels
// and classes. Throws vmoe::Error naming the file, the dataset and what is wrong.
DatasetInfo inspect_dataset(const std::string& spec);

// Every example's int32 label, in order over the shards (single-label data).
std::vector<int32_t> read_all_labels(const DatasetInfo& info);

}  // namespace vmoe
