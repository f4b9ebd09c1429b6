// Reader for IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or
// plain: a big-endian header (magic 0x00 0x00 <type> <rank>, then rank uint32
// dimensions) followed by the items. Only unsigned-byte data (type 0x08) is
// supported, which is what image and label files use.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct gzFile_s;

namespace vmoe {

class IdxReader {
 public:
  // Opens `path` and validates the header.
  explicit IdxReader(const std::string& path);
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<int64_t>& dims() const { return dims_; }
  int64_t count() const { return dims_[0]; }  // items (dimension 0)
  int64_t item_bytes() const { return item_bytes_; }

  // Reads the next `n` items into out[n * item_bytes()]; errors if the file
  // ends early.
  void read(int64_t n, uint8_t* out);
  // Errors if the file holds bytes after the last item.
  void expect_end();

 private:
  // Reads exactly `bytes` or returns how many were read.
  int64_t read_bytes(uint8_t* out, int64_t bytes);

  struct GzClose {
    void operator()(gzFile_s* file) const;
  };

  std::string path_;
  std::unique_ptr<gzFile_s, GzClose> file_;
  std::vector<int64_t> dims_;
  int64_t item_bytes_ = 1;
  int64_t items_read_ = 0;
};

}  // namespace vmoe
