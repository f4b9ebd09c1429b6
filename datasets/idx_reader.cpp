#include "datasets/idx_reader.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>

#include "core/check.h"

namespace vmoe {
namespace {

constexpr uint8_t kUnsignedByte = 0x08;
// Guards against absurd headers before allocating: 2^40 bytes.
constexpr int64_t kMaxBytes = int64_t{1} << 40;

std::string hex_bytes(const uint8_t* bytes, int n) {
  std::string out = "0x";
  char digits[3];
  for (int i = 0; i < n; ++i) {
    std::snprintf(digits, sizeof(digits), "%02X", bytes[i]);
    out += digits;
  }
  return out;
}

}  // namespace

IdxReader::IdxReader(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  VMOE_CHECK(fs::exists(path, ec), path, ": no such file");
  VMOE_CHECK(!fs::is_directory(path, ec), path, ": is a directory, expected an IDX file");
  // gzopen reads plain files transparently.
  file_.reset(gzopen(path.c_str(), "rb"));
  VMOE_CHECK(file_ != nullptr, path, ": cannot open");
  uint8_t magic[4];
  VMOE_CHECK(read_bytes(magic, 4) == 4, path, ": truncated IDX header (file shorter than 4 bytes)");
  VMOE_CHECK(magic[0] == 0 && magic[1] == 0 && magic[3] >= 1, path, ": bad IDX magic number ",
             hex_bytes(magic, 4), ", expected 0x0000TTRR (TT = type, RR = rank >= 1)");
  VMOE_CHECK(magic[2] == kUnsignedByte, path, ": IDX element type ", hex_bytes(magic + 2, 1),
             " is not supported, expected 0x08 (unsigned byte)");
  const int rank = magic[3];
  for (int d = 0; d < rank; ++d) {
    uint8_t b[4];
    VMOE_CHECK(read_bytes(b, 4) == 4, path, ": truncated IDX header (", rank, " dimensions, only ",
               d, " present)");
    const int64_t dim = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    dims_.push_back(dim);
    if (d > 0) {
      VMOE_CHECK(dim > 0, path, ": IDX dimension ", d, " is 0");
      item_bytes_ *= dim;
    }
  }
  VMOE_CHECK(count() * item_bytes_ <= kMaxBytes, path, ": IDX header claims ", count(),
             " items of ", item_bytes_, " bytes, which is implausibly large");
}

void IdxReader::GzClose::operator()(gzFile_s* file) const {
  gzclose(file);
}

int64_t IdxReader::read_bytes(uint8_t* out, int64_t bytes) {
  int64_t done = 0;
  while (done < bytes) {
    const unsigned piece = static_cast<unsigned>(std::min<int64_t>(bytes - done, INT_MAX / 2));
    const int got = gzread(file_.get(), out + done, piece);
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(file_.get(), &code);
      if (code == Z_BUF_ERROR) break;  // a truncated gzip stream: reported by the caller
      fail(path_, ": read error: ", message);
    }
    if (got == 0) break;
    done += got;
  }
  return done;
}

void IdxReader::read(int64_t n, uint8_t* out) {
  VMOE_CHECK(n >= 0 && items_read_ + n <= count(), "internal error: reading items [", items_read_,
             ", ", items_read_ + n, ") of ", path_, " which has ", count());
  const int64_t got = read_bytes(out, n * item_bytes_);
  VMOE_CHECK(got == n * item_bytes_, path_, ": truncated: the header promises ", count(),
             " items of ", item_bytes_, " bytes, but the data ends inside item ",
             items_read_ + got / item_bytes_);
  items_read_ += n;
}

void IdxReader::expect_end() {
  uint8_t extra;
  VMOE_CHECK(read_bytes(&extra, 1) == 0, path_, ": unexpected data after the ", count(),
             " items the header promises");
}

}  // namespace vmoe
