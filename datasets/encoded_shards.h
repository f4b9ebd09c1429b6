// What the importers that write encoded shards share: shard names, the
// check that lets an interrupted import keep the shards it finished, and the
// writer that packs (image bytes, label) pairs into a shard.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset_writer.h"

namespace vmoe {

// dir/split-SSSSS-of-TTTTT.h5
std::string encoded_shard_path(const std::string& dir, const std::string& split, int64_t shard,
                               int64_t shards);

// True if the shard is there, hence complete (the writer renames a file only
// when it is), written with this spec and at most `planned` examples;
// errors if it is there but from another import.
bool encoded_shard_complete(const std::string& path, int64_t planned, const DatasetSpec& spec);

// A new encoded single-label shard, fed one image at a time and appended a
// block at a time. Without finish(), the partial file is removed.
class EncodedShardWriter {
 public:
  EncodedShardWriter(const std::string& path, const DatasetSpec& spec) : writer_(path, spec) {}
  void add(const uint8_t* bytes, size_t size, int32_t label);
  // Appends what is left and completes the file; returns the images in it.
  int64_t finish();

 private:
  void flush();
  DatasetWriter writer_;
  std::vector<uint8_t> packed_;
  std::vector<int64_t> offsets_{0};
  std::vector<int32_t> labels_;
  int64_t written_ = 0;
};

}  // namespace vmoe
