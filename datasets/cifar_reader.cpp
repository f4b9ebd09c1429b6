#include "datasets/cifar_reader.h"

#include <filesystem>

#include "core/check.h"

namespace vmoe {

CifarReader::CifarReader(const std::string& path, CifarVariant variant)
    : path_(path), variant_(variant), record_(record_bytes()) {
  namespace fs = std::filesystem;
  std::error_code ec;
  VMOE_CHECK(fs::is_regular_file(path, ec), path, ": no such file");
  const auto bytes = static_cast<int64_t>(fs::file_size(path, ec));
  VMOE_CHECK(!ec, path, ": cannot read the file size: ", ec.message());
  VMOE_CHECK(bytes > 0 && bytes % record_bytes() == 0, path, ": size ", bytes,
             " bytes is not a positive multiple of the ",
             variant == CifarVariant::kCifar10 ? "CIFAR-10" : "CIFAR-100", " record size ",
             record_bytes(), " (truncated or wrong format?)");
  size_ = bytes / record_bytes();
  in_.open(path, std::ios::binary);
  VMOE_CHECK(in_.good(), path, ": cannot open");
}

void CifarReader::read(int64_t n, uint8_t* images, int32_t* labels, int32_t* coarse) {
  VMOE_CHECK(n >= 0 && records_read_ + n <= size_, "internal error: reading records [",
             records_read_, ", ", records_read_ + n, ") of ", path_, " which has ", size_);
  const bool cifar10 = variant_ == CifarVariant::kCifar10;
  const int label_bytes = cifar10 ? 1 : 2;
  const int num_classes = cifar10 ? 10 : 100;
  constexpr int kPlane = kCifarSide * kCifarSide;
  for (int64_t i = 0; i < n; ++i, ++records_read_) {
    in_.read(reinterpret_cast<char*>(record_.data()), record_bytes());
    VMOE_CHECK(in_.gcount() == record_bytes(), path_, ": read error in record ", records_read_);
    const int fine = record_[label_bytes - 1];
    VMOE_CHECK(fine < num_classes, path_, ": record ", records_read_, " has label ", fine,
               ", expected [0, ", num_classes, ")");
    labels[i] = fine;
    if (!cifar10) {
      VMOE_CHECK(record_[0] < 20, path_, ": record ", records_read_, " has coarse label ",
                 int{record_[0]}, ", expected [0, 20)");
      if (coarse != nullptr) coarse[i] = record_[0];
    }
    // Planar CHW -> channels-last HWC.
    const uint8_t* planes = record_.data() + label_bytes;
    uint8_t* out = images + i * kCifarImageBytes;
    for (int p = 0; p < kPlane; ++p) {
      for (int c = 0; c < kCifarChannels; ++c) out[p * kCifarChannels + c] = planes[c * kPlane + p];
    }
  }
}

std::vector<std::string> read_class_names(const std::string& path, int64_t expected) {
  std::ifstream in(path);
  VMOE_CHECK(in.good(), path, ": cannot open");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  VMOE_CHECK(expected == 0 || static_cast<int64_t>(names.size()) == expected, path, ": expected ",
             expected, " class names (one per line), found ", names.size());
  return names;
}

}  // namespace vmoe
