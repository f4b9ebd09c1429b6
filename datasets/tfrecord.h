// TFRecord files (what TFDS and big_vision read) and the tf.Example protos
// they usually hold, read without TensorFlow or protobuf: the framing is
//   uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)
// (little-endian; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8, CRC-32C
// Castagnoli), and tf.Example is decoded by a small protobuf wire-format
// reader (example.proto / feature.proto of TensorFlow).
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace vmoe {

// CRC-32C (Castagnoli) of data, and TFRecord's masked form of a CRC.
uint32_t crc32c(const uint8_t* data, size_t size);
uint32_t mask_crc32c(uint32_t crc);

// Appends one framed record holding `data` to `out` (TensorBoard's event
// files use the same framing).
void append_tfrecord(std::string& out, const std::string& data);

// Reads the records of one file in order; every length and data CRC is
// checked, and an error names the file and the record's byte offset.
class TfRecordReader {
 public:
  explicit TfRecordReader(const std::string& path);
  // The next record into `data`; false at a clean end of file.
  bool next(std::vector<uint8_t>& data);
  // Byte offset of the record next() returned last.
  int64_t offset() const { return offset_; }

 private:
  std::string path_;
  std::ifstream in_;
  int64_t offset_ = 0, position_ = 0;
};

// One tf.train.Feature: the list of its kind (the others stay empty).
struct TfFeature {
  enum class Kind { kNone, kBytes, kFloat, kInt64 } kind = Kind::kNone;
  std::vector<std::string> bytes;
  std::vector<float> floats;
  std::vector<int64_t> int64s;
};

// A tf.train.Example's feature map; errors name `what` (file and offset).
std::map<std::string, TfFeature> parse_tf_example(const uint8_t* data, size_t size,
                                                  const std::string& what);

}  // namespace vmoe
