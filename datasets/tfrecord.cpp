#include "datasets/tfrecord.h"

#include <array>
#include <cstring>

#include "core/check.h"

namespace vmoe {
namespace {

std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected
    table[i] = c;
  }
  return table;
}

uint32_t load_u32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// The protobuf wire format, as far as tf.Example needs it.
class Wire {
 public:
  Wire(const uint8_t* p, size_t n, const std::string& what) : p_(p), end_(p + n), what_(what) {}
  bool done() const { return p_ == end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      VMOE_CHECK(p_ < end_, what_, ": truncated varint in the tf.Example");
      const uint8_t b = *p_++;
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80u) == 0) return v;
    }
    fail(what_, ": varint longer than 10 bytes in the tf.Example");
  }
  // A length-delimited field's bytes.
  Wire sub() {
    const uint64_t n = varint();
    VMOE_CHECK(n <= static_cast<uint64_t>(end_ - p_), what_,
               ": a field runs past the end of the tf.Example (", n, " bytes)");
    Wire w(p_, n, what_);
    p_ += n;
    return w;
  }
  std::string bytes() {
    const Wire w = sub();
    return std::string(reinterpret_cast<const char*>(w.p_), w.end_ - w.p_);
  }
  uint32_t fixed32() {
    VMOE_CHECK(end_ - p_ >= 4, what_, ": truncated fixed32 in the tf.Example");
    const uint32_t v = load_u32(p_);
    p_ += 4;
    return v;
  }
  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0:
        varint();
        break;
      case 1:
        VMOE_CHECK(end_ - p_ >= 8, what_, ": truncated field");
        p_ += 8;
        break;
      case 2:
        sub();
        break;
      case 5:
        fixed32();
        break;
      default:
        fail(what_, ": not a tf.Example (wire type ", wire_type, ")");
    }
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& what_;
};

float as_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

TfFeature parse_feature(Wire w) {
  TfFeature f;
  while (!w.done()) {
    const uint64_t tag = w.varint();
    const auto field = static_cast<uint32_t>(tag >> 3), type = static_cast<uint32_t>(tag & 7);
    if (type != 2 || field < 1 || field > 3) {
      w.skip(type);
      continue;
    }
    Wire list = w.sub();
    f.kind = static_cast<TfFeature::Kind>(field);  // 1 bytes, 2 float, 3 int64
    while (!list.done()) {
      const uint64_t t = list.varint();
      const auto lf = static_cast<uint32_t>(t >> 3), lt = static_cast<uint32_t>(t & 7);
      if (lf != 1) {
        list.skip(lt);
        continue;
      }
      if (field == 1 && lt == 2) {
        f.bytes.push_back(list.bytes());
      } else if (field == 2 && lt == 5) {
        f.floats.push_back(as_float(list.fixed32()));
      } else if (field == 2 && lt == 2) {  // packed floats
        Wire packed = list.sub();
        while (!packed.done()) f.floats.push_back(as_float(packed.fixed32()));
      } else if (field == 3 && lt == 0) {
        f.int64s.push_back(static_cast<int64_t>(list.varint()));
      } else if (field == 3 && lt == 2) {  // packed int64s
        Wire packed = list.sub();
        while (!packed.done()) f.int64s.push_back(static_cast<int64_t>(packed.varint()));
      } else {
        list.skip(lt);
      }
    }
  }
  return f;
}

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t size) {
  static const std::array<uint32_t, 256> table = crc32c_table();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xffu] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t mask_crc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

void append_tfrecord(std::string& out, const std::string& data) {
  auto put_u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{data.size()} >> (8 * i));
  out.append(reinterpret_cast<const char*>(length), sizeof length);
  put_u32(mask_crc32c(crc32c(length, sizeof length)));
  out += data;
  put_u32(mask_crc32c(crc32c(reinterpret_cast<const uint8_t*>(data.data()), data.size())));
}

TfRecordReader::TfRecordReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
  VMOE_CHECK(in_.good(), path, ": cannot open the TFRecord file");
}

bool TfRecordReader::next(std::vector<uint8_t>& data) {
  uint8_t header[12];
  in_.read(reinterpret_cast<char*>(header), sizeof header);
  const std::streamsize got = in_.gcount();
  if (got == 0 && in_.eof()) return false;
  offset_ = position_;
  VMOE_CHECK(got == sizeof header, path_, ": record at byte ", offset_, ": truncated (", got,
             " of its 12 header bytes)");
  VMOE_CHECK(mask_crc32c(crc32c(header, 8)) == load_u32(header + 8), path_, ": record at byte ",
             offset_, ": length CRC mismatch (not a TFRecord file, or damaged)");
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = length << 8 | header[i];
  VMOE_CHECK(length < (uint64_t{1} << 34), path_, ": record at byte ", offset_,
             ": implausible length ", length);
  data.resize(length + 4);
  in_.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(length + 4));
  VMOE_CHECK(static_cast<uint64_t>(in_.gcount()) == length + 4, path_, ": record at byte ", offset_,
             ": truncated (", in_.gcount(), " of ", length + 4, " bytes after the header)");
  VMOE_CHECK(mask_crc32c(crc32c(data.data(), length)) == load_u32(data.data() + length), path_,
             ": record at byte ", offset_, ": data CRC mismatch (damaged)");
  data.resize(length);
  position_ += 12 + static_cast<int64_t>(length) + 4;
  return true;
}

std::map<std::string, TfFeature> parse_tf_example(const uint8_t* data, size_t size,
                                                  const std::string& what) {
  std::map<std::string, TfFeature> features;
  Wire example(data, size, what);
  while (!example.done()) {
    const uint64_t tag = example.varint();
    if (tag != (1u << 3 | 2)) {  // Example.features = 1
      example.skip(static_cast<uint32_t>(tag & 7));
      continue;
    }
    Wire map = example.sub();
    while (!map.done()) {
      const uint64_t t = map.varint();
      if (t != (1u << 3 | 2)) {  // Features.feature = 1 (map entries)
        map.skip(static_cast<uint32_t>(t & 7));
        continue;
      }
      Wire entry = map.sub();
      std::string key;
      TfFeature value;
      while (!entry.done()) {
        const uint64_t et = entry.varint();
        if (et == (1u << 3 | 2)) {
          key = entry.bytes();
        } else if (et == (2u << 3 | 2)) {
          value = parse_feature(entry.sub());
        } else {
          entry.skip(static_cast<uint32_t>(et & 7));
        }
      }
      features[key] = std::move(value);
    }
  }
  return features;
}

}  // namespace vmoe
