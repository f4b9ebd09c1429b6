#include "launch/metrics_log.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/check.h"

namespace vmoe {
namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_number(double value) {
  char buf[32];
  if (std::isfinite(value)) {
    std::snprintf(buf, sizeof buf, "%.17g", value);  // round-trips: resumes compare bit for bit
  } else {
    std::snprintf(buf, sizeof buf, "null");  // JSON has no NaN/Inf
  }
  return buf;
}

}  // namespace

JsonRecord& JsonRecord::add(const std::string& key, double value) {
  fields_.emplace_back(key, json_number(value));
  return *this;
}

JsonRecord& JsonRecord::add_json(const std::string& key, const std::string& json) {
  fields_.emplace_back(key, json);
  return *this;
}

std::string json_array(const std::vector<double>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    out += json_number(values[i]);
  }
  return out + "]";
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

JsonRecord& JsonRecord::add(const std::string& key, int64_t value) {
  fields_.emplace_back(key, std::to_string(value));
  return *this;
}

JsonRecord& JsonRecord::add(const std::string& key, const std::string& value) {
  fields_.emplace_back(key, quote(value));
  return *this;
}

std::string JsonRecord::str() const {
  std::string out = "{";
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (i) out += ", ";
    out += quote(fields_[i].first) + ": " + fields_[i].second;
  }
  return out + "}";
}

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  VMOE_CHECK(file_ != nullptr, "cannot open ", path, " for appending: ", std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const JsonRecord& record) {
  const std::string line = record.str() + "\n";
  VMOE_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
             "cannot write to ", path_, ": ", std::strerror(errno));
}

void MetricsLog::drop_after(int64_t step) {
  std::ifstream in(path_);
  std::string kept, line;
  while (std::getline(in, line) && step >= 0) {
    // Every record this program writes has "step": N (a run's last one too).
    const size_t at = line.find("\"step\": ");
    const long long s = at == std::string::npos ? -1 : std::atoll(line.c_str() + at + 8);
    if (s <= step) kept += line + "\n";
  }
  std::fclose(file_);
  file_ = nullptr;
  write_file_atomically(path_, kept);
  file_ = std::fopen(path_.c_str(), "a");
  VMOE_CHECK(file_ != nullptr, "cannot open ", path_, " for appending: ", std::strerror(errno));
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    VMOE_CHECK(out.good(), "cannot write ", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  VMOE_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
}

}  // namespace vmoe
