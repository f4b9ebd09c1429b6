// TFRecord framing and tf.Example parsing (datasets/tfrecord.h) on bytes
// built here field by field: the CRC-32C check value, records read back,
// truncation and damage named with the byte offset, and the protobuf wire
// forms of each feature list (packed and not). Files written by the
// protobuf package itself are read in cli/tfrecord_import.sh.
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "datasets/tfrecord.h"
#include "tests/dataset_files.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using ::testing::ElementsAre;
using testing::error_of;
using ::testing::HasSubstr;
using testing::TempDir;
using Bytes = std::vector<uint8_t>;

void append_u32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

Bytes frame(const Bytes& data) {
  Bytes out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(uint64_t{data.size()} >> (8 * i)));
  append_u32(out, mask_crc32c(crc32c(out.data(), 8)));
  out.insert(out.end(), data.begin(), data.end());
  append_u32(out, mask_crc32c(crc32c(data.data(), data.size())));
  return out;
}

void varint(Bytes& out, uint64_t v) {
  do {
    out.push_back(static_cast<uint8_t>((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
    v >>= 7;
  } while (v);
}

// A length-delimited field.
void field(Bytes& out, int number, const Bytes& body) {
  varint(out, static_cast<uint64_t>(number) << 3 | 2);
  varint(out, body.size());
  out.insert(out.end(), body.begin(), body.end());
}

Bytes text(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

// Example{features{feature{key: value}...}} from (key, Feature bytes).
Bytes example(const std::vector<std::pair<std::string, Bytes>>& features) {
  Bytes map;
  for (const auto& [key, feature] : features) {
    Bytes entry;
    field(entry, 1, text(key));
    field(entry, 2, feature);
    field(map, 1, entry);
  }
  Bytes out;
  field(out, 1, map);
  return out;
}

std::string write(const TempDir& dir, const std::string& name, const Bytes& bytes) {
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  return path;
}

TEST(TfRecord, Crc32cCheckValueAndMask) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32c(reinterpret_cast<const uint8_t*>(check.data()), check.size()), 0xe3069283u);
  EXPECT_EQ(mask_crc32c(0), 0xa282ead8u);
}

TEST(TfRecord, ReadsRecordsAndNamesDamageByOffset) {
  TempDir tmp;
  Bytes file = frame(text("first"));
  const Bytes second = frame(Bytes(300, 7));
  file.insert(file.end(), second.begin(), second.end());
  TfRecordReader reader(write(tmp, "ok", file));
  Bytes record;
  ASSERT_TRUE(reader.next(record));
  EXPECT_EQ(record, text("first"));
  EXPECT_EQ(reader.offset(), 0);
  ASSERT_TRUE(reader.next(record));
  EXPECT_EQ(record, Bytes(300, 7));
  EXPECT_EQ(reader.offset(), 12 + 5 + 4);
  EXPECT_FALSE(reader.next(record));

  Bytes truncated(file.begin(), file.end() - 3);
  TfRecordReader t(write(tmp, "truncated", truncated));
  ASSERT_TRUE(t.next(record));
  EXPECT_THAT(error_of([&] { t.next(record); }),
              HasSubstr("truncated: record at byte 21: truncated (301 of 304 bytes"));
  Bytes header_cut(file.begin(), file.begin() + 6);
  TfRecordReader h(write(tmp, "header_cut", header_cut));
  EXPECT_THAT(error_of([&] { h.next(record); }),
              HasSubstr("record at byte 0: truncated (6 of its 12 header bytes)"));
  Bytes flipped = file;
  flipped[21 + 12 + 100] ^= 1;
  TfRecordReader f(write(tmp, "flipped", flipped));
  ASSERT_TRUE(f.next(record));
  EXPECT_THAT(error_of([&] { f.next(record); }), HasSubstr("record at byte 21: data CRC mismatch"));
  Bytes length_flipped = file;
  length_flipped[1] ^= 1;
  TfRecordReader l(write(tmp, "length", length_flipped));
  EXPECT_THAT(error_of([&] { l.next(record); }),
              HasSubstr("record at byte 0: length CRC mismatch"));
}

TEST(TfRecord, ParsesEachFeatureKindPackedOrNot) {
  Bytes bytes_list, packed_ints, unpacked_ints, floats;
  field(bytes_list, 1, [] {  // Feature.bytes_list = 1: BytesList{value: "ab", value: "c"}
    Bytes l;
    field(l, 1, text("ab"));
    field(l, 1, text("c"));
    return l;
  }());
  field(packed_ints, 3, [] {  // Feature.int64_list = 3, packed: 5, 300, -1
    Bytes values;
    varint(values, 5);
    varint(values, 300);
    varint(values, ~uint64_t{0});
    Bytes l;
    field(l, 1, values);
    return l;
  }());
  field(unpacked_ints, 3, [] {
    Bytes l;
    varint(l, 1 << 3 | 0);
    varint(l, 999);
    return l;
  }());
  field(floats, 2, [] {  // Feature.float_list = 2, packed: 1.5
    Bytes values;
    append_u32(values, 0x3fc00000u);
    Bytes l;
    field(l, 1, values);
    return l;
  }());
  const Bytes ex = example(
      {{"image", bytes_list}, {"label", packed_ints}, {"other", unpacked_ints}, {"score", floats}});
  const auto features = parse_tf_example(ex.data(), ex.size(), "test record");
  EXPECT_THAT(features.at("image").bytes, ElementsAre("ab", "c"));
  EXPECT_EQ(features.at("image").kind, TfFeature::Kind::kBytes);
  EXPECT_THAT(features.at("label").int64s, ElementsAre(5, 300, -1));
  EXPECT_THAT(features.at("other").int64s, ElementsAre(999));
  EXPECT_THAT(features.at("score").floats, ElementsAre(1.5f));

  Bytes cut(ex.begin(), ex.end() - 2);
  EXPECT_THAT(error_of([&] { parse_tf_example(cut.data(), cut.size(), "rec 7"); }),
              HasSubstr("rec 7: a field runs past the end of the tf.Example"));
}

}  // namespace
}  // namespace vmoe
