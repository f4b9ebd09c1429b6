// Readers for the CIFAR-10 and CIFAR-100 binary formats.
//
// CIFAR-10 records: 1 label byte + 3072 image bytes; CIFAR-100 records: a
// coarse then a fine label byte + 3072 image bytes. Images are planar
// (all red, then green, then blue, 32x32 each); read() converts them to
// channels-last [32, 32, 3].
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace vmoe {

enum class CifarVariant { kCifar10, kCifar100 };

inline constexpr int kCifarSide = 32;
inline constexpr int kCifarChannels = 3;
inline constexpr int kCifarImageBytes = kCifarSide * kCifarSide * kCifarChannels;

class CifarReader {
 public:
  // Opens `path`; errors unless its size is a whole number of records.
  CifarReader(const std::string& path, CifarVariant variant);

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }  // records in the file
  int record_bytes() const { return variant_ == CifarVariant::kCifar10 ? 3073 : 3074; }

  // Reads the next n records: images [n, 32, 32, 3], labels [n] (fine labels
  // for CIFAR-100) and, for CIFAR-100, coarse [n] (may be null for CIFAR-10).
  // Errors name the record whose label is out of range.
  void read(int64_t n, uint8_t* images, int32_t* labels, int32_t* coarse);

 private:
  std::string path_;
  CifarVariant variant_;
  std::ifstream in_;
  int64_t size_ = 0;
  int64_t records_read_ = 0;
  std::vector<uint8_t> record_;
};

// Non-empty lines of a class-name file (batches.meta.txt, fine_label_names.txt,
// vmoe_import --class_names), trailing spaces cut; errors unless there are
// exactly `expected` of them (0: any number).
std::vector<std::string> read_class_names(const std::string& path, int64_t expected);

}  // namespace vmoe
