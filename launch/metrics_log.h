// Appends one JSON object per line to <run_dir>/metrics.jsonl, flushed per
// record so a crashed run keeps everything it logged.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace vmoe {

// One record under construction: {"key": value, ...} in insertion order.
class JsonRecord {
 public:
  JsonRecord& add(const std::string& key, double value);
  JsonRecord& add(const std::string& key, int64_t value);
  JsonRecord& add(const std::string& key, const std::string& value);
  // `json` is already JSON text (an array, a nested object).
  JsonRecord& add_json(const std::string& key, const std::string& json);
  std::string str() const;
  // (key, JSON text of the value), in insertion order.
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path);  // appends; creates if missing
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const JsonRecord& record);
  // A resumed run: drops the records of steps after `step` (they are run
  // again), so the file holds each step once; step < 0 drops every record (a
  // new run in the same folder). Rewrites the file atomically.
  void drop_after(int64_t step);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// A JSON array of numbers.
std::string json_array(const std::vector<double>& values);
// A CSV field, quoted when it holds a comma, quote or newline.
std::string csv_field(const std::string& s);

// Writes `text` to `path` atomically (temporary file, then rename).
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace vmoe
