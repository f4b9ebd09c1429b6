#include "launch/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "datasets/tfrecord.h"

namespace vmoe {
namespace {

// The protobuf wire format, writing side, for event.proto and summary.proto.
void varint(std::string& out, uint64_t v) {
  do {
    out.push_back(static_cast<char>((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
    v >>= 7;
  } while (v != 0);
}
void tag(std::string& out, int field, int wire_type) {
  varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}
void bytes_field(std::string& out, int field, const std::string& bytes) {
  tag(out, field, 2);
  varint(out, bytes.size());
  out += bytes;
}
template <typename T>
void fixed_field(std::string& out, int field, T value) {  // double: wire type 1, float: 5
  tag(out, field, sizeof(T) == 8 ? 1 : 5);
  char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof raw);  // little-endian host, as the format
  out.append(raw, sizeof raw);
}

double wall_time() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

// Event{wall_time = 1, step = 2} with the rest of its fields appended by the caller.
std::string event_header(int64_t step) {
  std::string e;
  fixed_field(e, 1, wall_time());
  tag(e, 2, 0);
  varint(e, static_cast<uint64_t>(step));
  return e;
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  VMOE_CHECK(!ec, "--tensorboard_dir=", dir, ": cannot create the folder: ", ec.message());
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = str_cat(dir, "/events.out.tfevents.", static_cast<int64_t>(wall_time()), ".", host, ".",
                  getpid());
  file_ = std::fopen(path_.c_str(), "ab");
  VMOE_CHECK(file_ != nullptr, path_, ": cannot create the event file: ", std::strerror(errno));
  std::string first = event_header(0);
  bytes_field(first, 3, "brain.Event:2");  // file_version, as TensorFlow writes first
  write_event(first);
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardWriter::scalars(int64_t step,
                                const std::vector<std::pair<std::string, double>>& values) {
  if (values.empty()) return;
  std::string summary;
  for (const auto& [name, value] : values) {
    std::string v;  // Summary.Value{tag = 1, simple_value = 2}
    bytes_field(v, 1, name);
    fixed_field(v, 2, static_cast<float>(value));
    bytes_field(summary, 1, v);
  }
  std::string event = event_header(step);
  bytes_field(event, 5, summary);  // Event.summary
  write_event(event);
}

void TensorBoardWriter::write_event(const std::string& event) {
  std::string framed;
  append_tfrecord(framed, event);
  VMOE_CHECK(std::fwrite(framed.data(), 1, framed.size(), file_) == framed.size() &&
                 std::fflush(file_) == 0,
             path_, ": write failed: ", std::strerror(errno));
}

std::vector<std::pair<std::string, double>> numeric_fields(
    const std::vector<std::pair<std::string, std::string>>& fields, const std::string& prefix,
    int64_t* step) {
  std::vector<std::pair<std::string, double>> out;
  *step = -1;
  for (const auto& [key, json] : fields) {
    char* end = nullptr;
    const double value = std::strtod(json.c_str(), &end);
    if (json.empty() || end != json.c_str() + json.size()) continue;  // not a number
    if (key == "step") {
      *step = static_cast<int64_t>(value);
    } else {
      out.emplace_back(prefix + "/" + key, value);
    }
  }
  return out;
}

}  // namespace vmoe
