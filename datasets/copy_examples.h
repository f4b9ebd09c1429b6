// Streams a range of a dataset file's examples into a new file in blocks
// (memory independent of N), atomically (the writer's .partial rename), so
// dst may be src itself. Used to split off a validation set and to label
// super-classes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmoe {

struct CopyOptions {
  int64_t first = 0;
  int64_t count = -1;  // -1: to the end
  // When set, /superclass of every example becomes class_to_superclass[label]
  // (single-label data); otherwise an existing /superclass is copied.
  const std::vector<int32_t>* class_to_superclass = nullptr;
};

// Returns the number of examples written.
int64_t copy_examples(const std::string& src, const std::string& dst, const CopyOptions& options);

// Moves the last `count` examples of `path` into `tail_path`; `path` keeps the rest.
void split_off_tail(const std::string& path, int64_t count, const std::string& tail_path);

}  // namespace vmoe
