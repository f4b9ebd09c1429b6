// What the importers that write encoded shards share: shard names and the
// check that lets an interrupted import keep the shards it finished.
#pragma once

#include <cstdint>
#include <string>

#include "datasets/dataset_writer.h"

namespace vmoe {

// dir/split-SSSSS-of-TTTTT.h5
std::string encoded_shard_path(const std::string& dir, const std::string& split, int64_t shard,
                               int64_t shards);

// True if the shard is there, hence complete (the writer renames a file only
// when it is), written with this spec and at most `planned` examples;
// errors if it is there but from another import.
bool encoded_shard_complete(const std::string& path, int64_t planned, const DatasetSpec& spec);

}  // namespace vmoe
