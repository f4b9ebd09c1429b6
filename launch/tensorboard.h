// TensorBoard event files: what vmoe and big_vision users watch. Each
// metrics.jsonl record's numbers become scalars tagged "<type>/<key>" (e.g.
// train/loss, train/learning_rate, eval/precision_at_1,
// train/moe/block_1/dropped, train/moe/block_1/load_e0) at the record's step,
// written as tensorflow.Event protos in TFRecord framing to
// <dir>/events.out.tfevents.<time>.<host>.<pid>, flushed per record.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace vmoe {

class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& dir);  // creates dir and a new file
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One Event holding a scalar per (tag, value).
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// The numeric fields of a JSON record as (prefix/key, value), "step" and
// "type" left out; the record's step (-1 if it has none).
std::vector<std::pair<std::string, double>> numeric_fields(
    const std::vector<std::pair<std::string, std::string>>& fields, const std::string& prefix,
    int64_t* step);

}  // namespace vmoe
