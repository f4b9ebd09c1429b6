#include "datasets/npy_reader.h"

#include <cctype>
#include <cstring>
#include <filesystem>

#include "core/check.h"

namespace vmoe {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicBytes = 6;
// Guards against absurd headers before allocating: 2^40 bytes.
constexpr int64_t kMaxBytes = int64_t{1} << 40;
constexpr uint32_t kMaxHeaderBytes = 1 << 20;

// A recursive-descent parser for the one dict literal .npy headers hold:
// string keys; string, True/False and tuple-of-integer values.
class HeaderParser {
 public:
  HeaderParser(const std::string& path, const std::string& text) : path_(path), text_(text) {}

  [[noreturn]] void error(const std::string& what) const {
    std::string shown = text_.substr(0, 120);
    while (!shown.empty() && std::isspace(static_cast<unsigned char>(shown.back())))
      shown.pop_back();
    fail(path_, ": malformed .npy header: ", what, " at offset ", pos_, " in ", shown);
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool consume(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) error(std::string("expected '") + c + "'");
  }
  bool at(char c) {
    skip_space();
    return pos_ < text_.size() && text_[pos_] == c;
  }
  std::string string_literal() {
    skip_space();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"'))
      error("expected a quoted string");
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == std::string::npos) error("unterminated string");
    std::string out = text_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_space();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      if (text_.compare(pos_, std::strlen(word), word) == 0) {
        pos_ += std::strlen(word);
        return value;
      }
    }
    error("expected True or False");
  }
  // (a, b, c), (a,) or (); dimensions must be non-negative integers.
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> dims;
    while (!consume(')')) {
      skip_space();
      const size_t start = pos_;
      int64_t value = 0;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
        if (value > kMaxBytes) error("dimension too large");
        value = value * 10 + (text_[pos_++] - '0');
      }
      if (pos_ == start) error("expected a non-negative integer dimension");
      if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2 longs
      dims.push_back(value);
      if (!consume(',') && !at(')')) error("expected ',' or ')'");
    }
    return dims;
  }

 private:
  const std::string& path_;
  const std::string& text_;
  size_t pos_ = 0;
};

uint32_t little_endian(const unsigned char* bytes, int n) {
  uint32_t value = 0;
  for (int i = n - 1; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

}  // namespace

NpyReader::NpyReader(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  VMOE_CHECK(fs::is_regular_file(path, ec), path, ": no such file");
  in_.open(path, std::ios::binary);
  VMOE_CHECK(in_.good(), path, ": cannot open");
  unsigned char prefix[kMagicBytes + 2];
  in_.read(reinterpret_cast<char*>(prefix), sizeof(prefix));
  VMOE_CHECK(in_.gcount() == sizeof(prefix) && std::memcmp(prefix, kMagic, kMagicBytes) == 0, path,
             ": not a .npy file (no \\x93NUMPY magic string)");
  major_ = prefix[kMagicBytes];
  VMOE_CHECK(major_ >= 1 && major_ <= 3, path, ": .npy format version ", major_, ".",
             int{prefix[kMagicBytes + 1]}, " is not supported, expected 1.0, 2.0 or 3.0");
  const int length_bytes = major_ == 1 ? 2 : 4;
  unsigned char length[4];
  in_.read(reinterpret_cast<char*>(length), length_bytes);
  VMOE_CHECK(in_.gcount() == length_bytes, path, ": truncated .npy header");
  const uint32_t header_bytes = little_endian(length, length_bytes);
  VMOE_CHECK(header_bytes <= kMaxHeaderBytes, path, ": .npy header length ", header_bytes,
             " is implausibly large");
  std::string header(header_bytes, '\0');
  in_.read(header.data(), header_bytes);
  VMOE_CHECK(in_.gcount() == static_cast<std::streamsize>(header_bytes), path,
             ": truncated .npy header (", header_bytes, " bytes promised)");
  parse_header(header);

  int64_t elements = 1;
  for (size_t d = 0; d < shape_.size(); ++d) {
    VMOE_CHECK(shape_[d] == 0 || elements <= kMaxBytes / shape_[d], path, ": .npy shape is ",
               "implausibly large");
    elements *= shape_[d];
    if (d > 0) row_elements_ *= shape_[d];
  }
  const int64_t data_offset = static_cast<int64_t>(kMagicBytes + 2 + length_bytes + header_bytes);
  const auto file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
  VMOE_CHECK(!ec, path, ": cannot read the file size: ", ec.message());
  const int64_t want = data_offset + elements * item_size_;
  VMOE_CHECK(file_bytes == want, path, ": ", file_bytes < want ? "truncated" : "unexpected data",
             ": the header promises ", elements, " elements of ", item_size_, " bytes (",
             want - data_offset, " data bytes), but the file has ", file_bytes - data_offset);
}

void NpyReader::parse_header(const std::string& text) {
  HeaderParser p(path_, text);
  bool has_descr = false, has_order = false, has_shape = false, fortran = false;
  p.expect('{');
  while (!p.consume('}')) {
    const std::string key = p.string_literal();
    p.expect(':');
    if (key == "descr") {
      if (p.at('[')) fail(path_, ": structured dtypes (a descr list) are not supported");
      descr_ = p.string_literal();
      has_descr = true;
    } else if (key == "fortran_order") {
      fortran = p.boolean();
      has_order = true;
    } else if (key == "shape") {
      shape_ = p.tuple();
      has_shape = true;
    } else {
      p.error("unexpected key '" + key + "'");
    }
    if (!p.consume(',') && !p.at('}')) p.error("expected ',' or '}'");
  }
  VMOE_CHECK(has_descr && has_order && has_shape, path_,
             ": malformed .npy header: it needs the keys 'descr', 'fortran_order' and 'shape'");
  VMOE_CHECK(!fortran, path_, ": Fortran-order arrays are not supported; save a C-order array ",
             "(numpy.ascontiguousarray) instead");
  VMOE_CHECK(!shape_.empty(), path_, ": a 0-dimensional array; expected at least 1 dimension");
  parse_descr(descr_);
}

void NpyReader::parse_descr(const std::string& descr) {
  const bool well_formed = descr.size() >= 3 && std::strchr("<>|=", descr[0]) != nullptr &&
                           (descr.size() == 3 || descr.size() == 4) &&
                           std::isdigit(static_cast<unsigned char>(descr[2])) &&
                           std::isdigit(static_cast<unsigned char>(descr.back()));
  VMOE_CHECK(well_formed, path_, ": dtype '", descr, "' is not supported (expected e.g. '|u1', ",
             "'<i8' or '<f4')");
  kind_ = descr[1];
  item_size_ = std::stoi(descr.substr(2));
  const bool plain = (kind_ == 'b' && item_size_ == 1) ||
                     ((kind_ == 'i' || kind_ == 'u') &&
                      (item_size_ == 1 || item_size_ == 2 || item_size_ == 4 || item_size_ == 8)) ||
                     (kind_ == 'f' && (item_size_ == 4 || item_size_ == 8));
  VMOE_CHECK(plain, path_, ": dtype '", descr, "' is not supported (expected a bool, integer, ",
             "float32 or float64 dtype)");
  VMOE_CHECK(descr[0] != '>' || item_size_ == 1, path_, ": dtype '", descr,
             "' is big-endian, which is not supported; save it little-endian (e.g. ",
             "arr.astype('<", descr.substr(1), "'))");
  VMOE_CHECK(descr[0] != '=' || item_size_ == 1, path_, ": dtype '", descr,
             "' has native byte order, which is ambiguous in a file; expected '<' or '|'");
}

void NpyReader::read(int64_t n, void* out) {
  VMOE_CHECK(n >= 0 && rows_read_ + n <= count(), "internal error: reading rows [", rows_read_,
             ", ", rows_read_ + n, ") of ", path_, " which has ", count());
  const int64_t bytes = n * row_elements_ * item_size_;
  in_.read(static_cast<char*>(out), static_cast<std::streamsize>(bytes));
  VMOE_CHECK(in_.gcount() == bytes, path_, ": read error in row ", rows_read_);
  rows_read_ += n;
}

void NpyReader::read_integers(int64_t n, int64_t* out) {
  VMOE_CHECK(kind_ == 'i' || kind_ == 'u' || kind_ == 'b', path_, ": dtype '", descr_,
             "' is not an integer dtype");
  const int64_t first = rows_read_ * row_elements_, elements = n * row_elements_;
  std::vector<unsigned char> raw(elements * item_size_);
  read(n, raw.data());
  for (int64_t i = 0; i < elements; ++i) {
    uint64_t bits = 0;
    for (int b = item_size_ - 1; b >= 0; --b) bits = (bits << 8) | raw[i * item_size_ + b];
    if (kind_ == 'i' && item_size_ < 8 && (bits >> (8 * item_size_ - 1)) != 0) {
      bits |= ~uint64_t{0} << (8 * item_size_);  // sign-extend
    }
    VMOE_CHECK(kind_ == 'i' || bits <= static_cast<uint64_t>(INT64_MAX), path_, ": element ",
               first + i, " is ", bits, ", which does not fit in int64");
    out[i] = static_cast<int64_t>(bits);
  }
}

}  // namespace vmoe
