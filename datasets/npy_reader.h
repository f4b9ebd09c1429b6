// Reader for NumPy .npy files, format versions 1.0, 2.0 and 3.0:
//
//   "\x93NUMPY" major minor, header length (little-endian uint16 in 1.0,
//   uint32 in 2.0/3.0), then the header: a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (10, 28, 28), }
//   padded with spaces and a '\n', then the raw array.
//
// Only C-order arrays of plain little-endian (or byte-order-free) bool,
// integer and float dtypes are accepted; what a caller accepts beyond that
// (e.g. only uint8 images) it checks itself. The file size must match the
// header exactly, so truncated files are reported before any data is read.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace vmoe {

class NpyReader {
 public:
  // Opens `path` and validates the header.
  explicit NpyReader(const std::string& path);
  NpyReader(const NpyReader&) = delete;
  NpyReader& operator=(const NpyReader&) = delete;

  const std::string& path() const { return path_; }
  const std::string& descr() const { return descr_; }  // as written, e.g. "<f4", "|u1"
  char kind() const { return kind_; }                  // 'b', 'i', 'u' or 'f'
  int item_size() const { return item_size_; }         // bytes per element
  int major_version() const { return major_; }
  const std::vector<int64_t>& shape() const { return shape_; }  // at least 1 dimension
  int64_t count() const { return shape_[0]; }                   // rows (dimension 0)
  int64_t row_elements() const { return row_elements_; }        // product of shape[1:]

  // Reads the next n rows (raw little-endian elements) into out[n * row bytes].
  void read(int64_t n, void* out);
  // Reads the next n elements of an integer (or bool) array of any size as int64.
  void read_integers(int64_t n, int64_t* out);

 private:
  void parse_header(const std::string& text);
  void parse_descr(const std::string& descr);

  std::string path_;
  std::ifstream in_;
  int major_ = 0;
  std::string descr_;
  char kind_ = 0;
  int item_size_ = 0;
  std::vector<int64_t> shape_;
  int64_t row_elements_ = 1;
  int64_t rows_read_ = 0;
};

}  // namespace vmoe
