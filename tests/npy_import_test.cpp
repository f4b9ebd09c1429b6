// The .npy reader on hand-written headers (versions 1.0 to 3.0, header
// variants, every error) and import_npy end to end.
#include <cstring>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/h5.h"
#include "datasets/importer.h"
#include "datasets/npy_reader.h"
#include "tests/dataset_files.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using testing::error_of;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::read_split;
using testing::Split;

// A .npy file as NumPy writes it: the header padded with spaces and a '\n'
// so the data starts at a multiple of 64 bytes.
std::string npy(const std::string& dict, const std::string& data, int major = 1) {
  const size_t prefix = 8 + (major == 1 ? 2 : 4);
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < prefix - 8; ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 255);
  out += header;
  out += data;
  return out;
}

std::string dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  std::string out = "{'descr': '";
  out += descr;
  out += "', 'fortran_order': ";
  out += fortran ? "True" : "False";
  out += ", 'shape': ";
  out += shape;
  out += ", }";
  return out;
}

template <typename T>
std::string raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(NpyReader, ReadsVersionOneUint8) {
  TempDir dir;
  std::vector<uint8_t> data(12);
  for (int i = 0; i < 12; ++i) data[i] = static_cast<uint8_t>(i * 20);
  write(dir.file("a.npy"), npy(dict("|u1", "(2, 2, 3)"), raw(data)));
  NpyReader reader(dir.file("a.npy"));
  EXPECT_EQ(reader.major_version(), 1);
  EXPECT_EQ(reader.descr(), "|u1");
  EXPECT_EQ(reader.kind(), 'u');
  EXPECT_EQ(reader.item_size(), 1);
  EXPECT_EQ(reader.shape(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(reader.count(), 2);
  EXPECT_EQ(reader.row_elements(), 6);
  std::vector<uint8_t> got(12);
  reader.read(1, got.data());
  reader.read(1, got.data() + 6);
  EXPECT_EQ(got, data);
}

TEST(NpyReader, ReadsVersionTwoAndThreeAndHeaderVariants) {
  TempDir dir;
  // Version 2.0, 4-D float32, other key order, double quotes, no trailing comma.
  const std::vector<float> pixels = {0.0f, 0.5f, 1.0f, 0.25f, 0.125f, 0.75f};
  write(dir.file("f.npy"),
        npy("{\"shape\": (1, 1, 2, 3), \"fortran_order\": False, \"descr\": \"<f4\"}", raw(pixels),
            2));
  NpyReader f(dir.file("f.npy"));
  EXPECT_EQ(f.major_version(), 2);
  EXPECT_EQ(f.kind(), 'f');
  EXPECT_EQ(f.item_size(), 4);
  EXPECT_EQ(f.shape(), (std::vector<int64_t>{1, 1, 2, 3}));
  std::vector<float> got(6);
  f.read(1, got.data());
  EXPECT_EQ(got, pixels);
  // Version 3.0, int64 labels with negative values; a 1-tuple shape.
  write(dir.file("i8.npy"),
        npy(dict("<i8", "(4,)"), raw(std::vector<int64_t>{0, -3, 1LL << 40, 9}), 3));
  NpyReader i8(dir.file("i8.npy"));
  EXPECT_EQ(i8.major_version(), 3);
  std::vector<int64_t> labels(4);
  i8.read_integers(4, labels.data());
  EXPECT_THAT(labels, ElementsAre(0, -3, 1LL << 40, 9));
  // Narrow types: sign extension, unsigned values; Python 2 long dimensions.
  write(dir.file("i1.npy"), npy(dict("|i1", "(3L,)"), raw(std::vector<int8_t>{-1, -128, 127})));
  NpyReader i1(dir.file("i1.npy"));
  i1.read_integers(3, labels.data());
  EXPECT_THAT(std::vector<int64_t>(labels.begin(), labels.begin() + 3), ElementsAre(-1, -128, 127));
  write(dir.file("u2.npy"), npy(dict("<u2", "(2,)"), raw(std::vector<uint16_t>{65535, 7})));
  NpyReader u2(dir.file("u2.npy"));
  u2.read_integers(2, labels.data());
  EXPECT_THAT(std::vector<int64_t>(labels.begin(), labels.begin() + 2), ElementsAre(65535, 7));
  write(dir.file("u8.npy"), npy(dict("<u8", "(1,)"), raw(std::vector<uint64_t>{~uint64_t{0}})));
  NpyReader u8(dir.file("u8.npy"));
  EXPECT_THAT(error_of([&] { u8.read_integers(1, labels.data()); }),
              HasSubstr("element 0 is 18446744073709551615, which does not fit in int64"));
}

TEST(NpyReader, Errors) {
  TempDir dir;
  auto error = [&](const std::string& bytes) {
    write(dir.file("x.npy"), bytes);
    return error_of([&] { NpyReader r(dir.file("x.npy")); });
  };
  const std::string four(4, '\0');
  EXPECT_THAT(error("PK\x03\x04 a zip file"),
              AllOf(HasSubstr(dir.file("x.npy")), HasSubstr("not a .npy file")));
  std::string v4 = npy(dict("|u1", "(4,)"), four);
  v4[6] = 4;
  EXPECT_THAT(error(v4), HasSubstr(".npy format version 4.0 is not supported"));
  EXPECT_THAT(
      error(npy(dict("|u1", "(2, 2)", true), four)),
      AllOf(HasSubstr(dir.file("x.npy")), HasSubstr("Fortran-order arrays are not supported")));
  EXPECT_THAT(error(npy(dict(">i4", "(1,)"), four)),
              AllOf(HasSubstr("dtype '>i4' is big-endian"), HasSubstr("astype('<i4')")));
  EXPECT_THAT(error(npy(dict("<c8", "(1,)"), std::string(8, '\0'))),
              HasSubstr("dtype '<c8' is not supported"));
  EXPECT_THAT(error(npy(dict("<U5", "(1,)"), std::string(20, '\0'))),
              HasSubstr("dtype '<U5' is not supported"));
  EXPECT_THAT(
      error(npy("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,), }", four)),
      HasSubstr("structured dtypes"));
  EXPECT_THAT(error(npy("{'descr': '|u1', 'shape': (4,), }", four)),
              HasSubstr("needs the keys 'descr', 'fortran_order' and 'shape'"));
  EXPECT_THAT(error(npy("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), 'x': 1}", four)),
              HasSubstr("unexpected key 'x'"));
  EXPECT_THAT(error(npy("{'descr' '|u1', 'fortran_order': False, 'shape': (4,)}", four)),
              AllOf(HasSubstr("malformed .npy header: expected ':'"), HasSubstr("{'descr' '|u1'")));
  EXPECT_THAT(error(npy(dict("|u1", "(2, -1)"), four)),
              HasSubstr("expected a non-negative integer"));
  EXPECT_THAT(error(npy(dict("|u1", "()"), "\x01")), HasSubstr("0-dimensional"));
  EXPECT_THAT(error(npy(dict("<i4", "(2, 3)"), std::string(20, '\0'))),
              AllOf(HasSubstr(dir.file("x.npy")), HasSubstr("truncated"),
                    HasSubstr("6 elements of 4 bytes (24 data bytes), but the file has 20")));
  EXPECT_THAT(error(npy(dict("|u1", "(4,)"), four + "z")), HasSubstr("unexpected data"));
  EXPECT_THAT(error(std::string("\x93NUMPY\x01\x00\x50", 9)), HasSubstr("truncated .npy header"));
  EXPECT_THAT(error_of([&] { NpyReader r(dir.file("absent.npy")); }), HasSubstr("no such file"));
}

TEST(NpyImport, GrayUint8WithClassNames) {
  TempDir dir;
  std::vector<uint8_t> train(3 * 2 * 2), test(2 * 2 * 2);
  for (size_t i = 0; i < train.size(); ++i) train[i] = static_cast<uint8_t>(i * 11);
  for (size_t i = 0; i < test.size(); ++i) test[i] = static_cast<uint8_t>(200 + i);
  write(dir.file("train_images.npy"), npy(dict("|u1", "(3, 2, 2)"), raw(train)));
  write(dir.file("train_labels.npy"), npy(dict("<i8", "(3,)"), raw(std::vector<int64_t>{0, 2, 1})));
  write(dir.file("test_images.npy"), npy(dict("|u1", "(2, 2, 2)"), raw(test), 2));
  write(dir.file("test_labels.npy"), npy(dict("|u1", "(2,)"), raw(std::vector<uint8_t>{2, 0})));
  import_npy(dir.path().string(), dir.file("plain"), {});
  Split s = read_split(dir.file("plain/train.h5"));
  EXPECT_EQ(s.info.height, 2);
  EXPECT_EQ(s.info.channels, 1);
  EXPECT_EQ(s.info.num_classes, 3);
  EXPECT_THAT(s.info.class_names, ElementsAre("0", "1", "2"));
  EXPECT_EQ(s.images, train);
  EXPECT_THAT(s.labels, ElementsAre(0, 2, 1));
  s = read_split(dir.file("plain/test.h5"));
  EXPECT_EQ(s.images, test);
  EXPECT_THAT(s.labels, ElementsAre(2, 0));

  std::ofstream(dir.file("class_names.txt")) << "cat\ndog\nemu\n";
  import_npy(dir.path().string(), dir.file("named"), {.channels = 3});
  s = read_split(dir.file("named/test.h5"));
  EXPECT_THAT(s.info.class_names, ElementsAre("cat", "dog", "emu"));
  EXPECT_EQ(s.info.channels, 3);
  EXPECT_THAT(std::vector<uint8_t>(s.images.begin(), s.images.begin() + 6),
              ElementsAre(200, 200, 200, 201, 201, 201));
  std::ofstream(dir.file("class_names.txt")) << "cat\ndog\n";
  EXPECT_THAT(error_of([&] { import_npy(dir.path().string(), dir.file("x"), {}); }),
              AllOf(HasSubstr("class_names.txt"), HasSubstr("expected 3 class names")));
}

TEST(NpyImport, Float32RgbConvertedAndResized) {
  TempDir dir;
  // round(255 v): 0, 128 (127.5 rounds up), 255, 51, 26 (25.5), 191 (191.25).
  const std::vector<float> image = {0.0f, 0.5f, 1.0f, 0.2f, 0.1f, 0.75f};
  write(dir.file("train_images.npy"), npy(dict("<f4", "(1, 1, 2, 3)"), raw(image)));
  write(dir.file("test_images.npy"), npy(dict("<f4", "(1, 1, 2, 3)"), raw(image)));
  write(dir.file("train_labels.npy"), npy(dict("<i4", "(1,)"), raw(std::vector<int32_t>{1})));
  write(dir.file("test_labels.npy"), npy(dict("<i2", "(1,)"), raw(std::vector<int16_t>{0})));
  import_npy(dir.path().string(), dir.file("rgb"), {});
  Split s = read_split(dir.file("rgb/train.h5"));
  EXPECT_EQ(s.info.channels, 3);
  EXPECT_EQ(s.info.num_classes, 2);
  EXPECT_THAT(s.images, ElementsAre(0, 128, 255, 51, 26, 191));
  // Gray (BT.601: 104.206 -> 104, 52.285 -> 52), then 1x2 -> 2x4.
  import_npy(dir.path().string(), dir.file("gray"), {.height = 2, .width = 4, .channels = 1});
  s = read_split(dir.file("gray/test.h5"));
  EXPECT_EQ(s.info.height, 2);
  EXPECT_EQ(s.info.width, 4);
  EXPECT_THAT(s.images, ElementsAre(104, 91, 65, 52, 104, 91, 65, 52));
}

TEST(NpyImport, Errors) {
  TempDir dir;
  const std::string in = dir.path().string();
  auto run = [&](const ImageImportOptions& options = {}) {
    return error_of([&] { import_npy(in, dir.file("out"), options); });
  };
  const std::vector<uint8_t> pixels(2 * 2 * 2, 9);
  write(dir.file("train_images.npy"), npy(dict("|u1", "(2, 2, 2)"), raw(pixels)));
  write(dir.file("test_images.npy"), npy(dict("|u1", "(2, 2, 2)"), raw(pixels)));
  write(dir.file("train_labels.npy"), npy(dict("<i8", "(2,)"), raw(std::vector<int64_t>{0, 1})));
  EXPECT_THAT(run(), AllOf(HasSubstr("test_labels.npy"), HasSubstr("no such file")));
  write(dir.file("test_labels.npy"), npy(dict("<i8", "(2,)"), raw(std::vector<int64_t>{0, 1})));
  write(dir.file("train_labels.npy"), npy(dict("<i8", "(3,)"), raw(std::vector<int64_t>{0, 1, 1})));
  EXPECT_THAT(run(), AllOf(HasSubstr("train_images.npy has 2 images but"),
                           HasSubstr("train_labels.npy has 3 labels")));
  write(dir.file("train_labels.npy"), npy(dict("<i8", "(2,)"), raw(std::vector<int64_t>{0, -4})));
  EXPECT_THAT(run(), AllOf(HasSubstr("train_labels.npy: label 1 is -4, expected >= 0")));
  write(dir.file("train_labels.npy"), npy(dict("<i8", "(2, 1)"), raw(std::vector<int64_t>{0, 1})));
  EXPECT_THAT(run(), HasSubstr("labels have shape [2, 1], expected [N]"));
  write(dir.file("train_labels.npy"), npy(dict("<f4", "(2,)"), raw(std::vector<float>{0, 1})));
  EXPECT_THAT(run(), HasSubstr("labels have dtype '<f4', expected an integer dtype"));
  write(dir.file("train_labels.npy"), npy(dict("<i8", "(2,)"), raw(std::vector<int64_t>{0, 1})));
  EXPECT_THAT(run({.test_fraction = 0.2}),
              HasSubstr("--test_fraction applies to --format=png_folder"));

  write(dir.file("test_images.npy"), npy(dict("<i2", "(2, 2, 1)"), std::string(8, '\0')));
  EXPECT_THAT(run(), AllOf(HasSubstr("test_images.npy: images have dtype '<i2'"),
                           HasSubstr("expected uint8 ('|u1') or float32")));
  write(dir.file("test_images.npy"), npy(dict("|u1", "(2, 2)"), raw(std::vector<uint8_t>(4))));
  EXPECT_THAT(run(), HasSubstr("images have shape [2, 2], expected [N, H, W] or [N, H, W, C]"));
  write(dir.file("test_images.npy"),
        npy(dict("|u1", "(2, 1, 1, 4)"), raw(std::vector<uint8_t>(8))));
  EXPECT_THAT(run(), HasSubstr("C = 4, expected 1 (gray) or 3 (RGB)"));
  write(dir.file("test_images.npy"), npy(dict("|u1", "(2, 3, 3)"), raw(std::vector<uint8_t>(18))));
  EXPECT_THAT(run(), AllOf(HasSubstr("test_images.npy has images of 3x3 but"),
                           HasSubstr("--image_size=HxW")));
  EXPECT_NO_THROW(import_npy(in, dir.file("out"), {.height = 3, .width = 3}));

  write(dir.file("test_images.npy"),
        npy(dict("<f4", "(2, 2, 2)"), raw(std::vector<float>{0, 1, 0, 1, 1.5f, 0, 0, 0})));
  EXPECT_THAT(run(), AllOf(HasSubstr("test_images.npy: image 1 has value 1.5 at element 0"),
                           HasSubstr("expected float32 values in [0, 1]")));
  EXPECT_FALSE(fs::exists(dir.file("out/test.h5.partial")));
}

}  // namespace
}  // namespace vmoe
