// Schema validation, the HDF5 helpers and DatasetWriter.
#include <fstream>
#include <optional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/check.h"
#include "core/h5.h"
#include "datasets/dataset_info.h"
#include "datasets/dataset_writer.h"
#include "datasets/loader.h"
#include "tests/dataset_files.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::error_of;

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::SyntheticOptions;
using testing::TempDir;
using testing::write_synthetic;


// A small file written with the raw helpers, so tests can break any part.
struct RawSpec {
  std::vector<int64_t> image_shape = {10, 2, 2, 1};
  bool float_images = false;
  bool write_labels = true;
  std::vector<int64_t> label_shape = {10};
  std::vector<int32_t> labels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::optional<int64_t> num_classes = 10;
  std::optional<std::vector<std::string>> class_names =
      std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  std::optional<std::vector<int32_t>> superclass;
};

h5::DatasetLayout contiguous(const std::vector<int64_t>& shape) {
  h5::DatasetLayout layout;
  layout.shape = shape;
  layout.growable = false;
  return layout;
}

int64_t elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string write_raw(const std::string& path, const RawSpec& s) {
  h5::File file = h5::File::create(path);
  if (s.float_images) {
    std::vector<float> data(elements(s.image_shape), 0.5f);
    file.create_dataset<float>("/images", contiguous(s.image_shape))
        .write_rows(0, s.image_shape[0], data.data());
  } else {
    std::vector<uint8_t> data(elements(s.image_shape), 7);
    file.create_dataset<uint8_t>("/images", contiguous(s.image_shape))
        .write_rows(0, s.image_shape[0], data.data());
  }
  if (s.write_labels) {
    file.create_dataset<int32_t>("/labels", contiguous(s.label_shape))
        .write_rows(0, s.label_shape[0], s.labels.data());
  }
  if (s.superclass) {
    const int64_t n = static_cast<int64_t>(s.superclass->size());
    file.create_dataset<int32_t>("/superclass", contiguous({n}))
        .write_rows(0, n, s.superclass->data());
  }
  if (s.num_classes) file.write_int64_attribute("num_classes", *s.num_classes);
  if (s.class_names) file.write_strings_attribute("class_names", *s.class_names);
  file.close();
  return path;
}

TEST(H5, AttributesRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("attrs.h5");
  {
    h5::File file = h5::File::create(path);
    file.write_int64_attribute("count", -1234567890123);
    file.write_strings_attribute("names", {"T-shirt/top", "", "Ankle boot", "ünïcode"});
    // A fixed-length string attribute, as other tools may write.
    auto guard = h5::lock();
    h5::Handle type(H5Tcopy(H5T_C_S1), h5::Kind::kDatatype);
    H5Tset_size(type.get(), 6);
    const hsize_t n = 2;
    h5::Handle space(H5Screate_simple(1, &n, nullptr), h5::Kind::kDataspace);
    h5::Handle attr(
        H5Acreate2(file.id(), "fixed", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
        h5::Kind::kAttribute);
    const char data[12] = {'c', 'a', 't', 0, 0, 0, 'b', 'i', 'r', 'd', 's', '!'};
    ASSERT_GE(H5Awrite(attr.get(), type.get(), data), 0);
  }
  const h5::File file = h5::File::open_read(path);
  EXPECT_EQ(file.read_int64_attribute("count"), -1234567890123);
  EXPECT_EQ(file.read_strings_attribute("names"),
            (std::vector<std::string>{"T-shirt/top", "", "Ankle boot", "ünïcode"}));
  EXPECT_EQ(file.read_strings_attribute("fixed"), (std::vector<std::string>{"cat", "birds!"}));
  EXPECT_FALSE(file.has_attribute("nothing"));
  EXPECT_THAT(error_of([&] { file.read_int64_attribute("nothing"); }),
              AllOf(HasSubstr(path), HasSubstr("missing attribute nothing")));
  EXPECT_THAT(error_of([&] { file.read_int64_attribute("names"); }),
              AllOf(HasSubstr("attribute names"), HasSubstr("expected one integer")));
}

TEST(H5, ReadsRowRangesAndLists) {
  TempDir dir;
  const std::string path = write_synthetic(dir.file("d.h5"), {.size = 50});
  const h5::File file = h5::File::open_read(path);
  const h5::Dataset images = file.dataset("/images");
  EXPECT_EQ(images.shape(), (std::vector<int64_t>{50, 4, 5, 3}));
  EXPECT_EQ(images.dtype().name(), "uint8");
  const std::vector<int64_t> rows = {0, 1, 2, 17, 30, 31, 49};
  std::vector<uint8_t> got(rows.size() * 60);
  images.read_rows<uint8_t>(rows, got.data());
  for (size_t r = 0; r < rows.size(); ++r) {
    EXPECT_EQ(got[r * 60], testing::synthetic_pixel(rows[r], 0, 0, 0));
    EXPECT_EQ(got[r * 60 + 59], testing::synthetic_pixel(rows[r], 3, 4, 2));
  }
  std::vector<uint8_t> range(3 * 60);
  images.read_rows(47, 3, range.data());
  EXPECT_EQ(range[0], testing::synthetic_pixel(47, 0, 0, 0));
  EXPECT_THAT(error_of([&] { images.read_rows(48, 3, range.data()); }),
              AllOf(HasSubstr("/images in " + path), HasSubstr("50 rows")));
}

TEST(Inspect, DescribesAValidFile) {
  TempDir dir;
  const std::string path = write_synthetic(dir.file("d.h5"), {.size = 123,
                                                              .height = 6,
                                                              .width = 7,
                                                              .channels = 2,
                                                              .num_classes = 13,
                                                              .has_superclass = true});
  const DatasetInfo info = inspect_dataset(path);
  EXPECT_EQ(info.path, path);
  EXPECT_EQ(info.size, 123);
  EXPECT_EQ(info.height, 6);
  EXPECT_EQ(info.width, 7);
  EXPECT_EQ(info.channels, 2);
  EXPECT_EQ(info.num_classes, 13);
  EXPECT_FALSE(info.multi_label);
  EXPECT_TRUE(info.has_superclass);
  ASSERT_EQ(info.class_names.size(), 13u);
  EXPECT_EQ(info.class_names[12], "class12");
}

TEST(Inspect, MissingFile) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { inspect_dataset(dir.file("nope.h5")); }),
              AllOf(HasSubstr(dir.file("nope.h5")), HasSubstr("no such file")));
}

TEST(Inspect, NotAnHdf5File) {
  TempDir dir;
  const std::string path = dir.file("text.h5");
  std::ofstream(path) << "just some text, not HDF5\n";
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr(path), HasSubstr("not an HDF5 file")));
}

TEST(Inspect, TruncatedFile) {
  TempDir dir;
  const std::string full = write_synthetic(dir.file("full.h5"), {.size = 500});
  const std::string half = dir.file("half.h5");
  const auto size = std::filesystem::file_size(full);
  std::vector<char> bytes(size / 2);
  std::ifstream(full, std::ios::binary).read(bytes.data(), bytes.size());
  std::ofstream(half, std::ios::binary).write(bytes.data(), bytes.size());
  EXPECT_THAT(error_of([&] { inspect_dataset(half); }),
              AllOf(HasSubstr(half), HasSubstr("truncated")));
}

TEST(Inspect, CorruptedHeader) {
  TempDir dir;
  const std::string path = write_synthetic(dir.file("d.h5"), {.size = 20});
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.write("garbage!", 8);  // over the HDF5 signature
  }
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr(path), HasSubstr("not an HDF5 file")));
}

// Overwrites bytes inside the first chunk of /images: only the checksum can tell.
TEST(Inspect, CorruptedPixelsAreDetectedByTheLoader) {
  TempDir dir;
  const std::string path = write_synthetic(dir.file("d.h5"), {.size = 200});
  haddr_t offset = 0;
  {
    const h5::File file = h5::File::open_read(path);
    const h5::Dataset images = file.dataset("/images");
    auto guard = h5::lock();
    h5::Handle space(H5Dget_space(images.id()), h5::Kind::kDataspace);
    hsize_t chunk_offset[4];
    unsigned filter_mask = 0;
    hsize_t chunk_size = 0;
    ASSERT_GE(H5Dget_chunk_info(images.id(), space.get(), 0, chunk_offset, &filter_mask, &offset,
                                &chunk_size),
              0);
  }
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(offset + 10));
    f.write("\x01\x02\x03\x04", 4);
  }
  // Metadata is intact, so inspection passes; reading the pixels must fail.
  EXPECT_NO_THROW(inspect_dataset(path));
  Loader loader({.path = path, .batch_size = 8, .training = false, .prefetch = 2});
  Batch batch;
  EXPECT_THAT(error_of([&] { loader.next(batch); }),
              AllOf(HasSubstr("/images in " + path), HasSubstr("checksum")));
  // The error sticks: later calls report it again instead of hanging.
  EXPECT_THAT(error_of([&] { loader.next(batch); }), HasSubstr("checksum"));
}

TEST(Inspect, MissingDatasets) {
  TempDir dir;
  RawSpec spec;
  spec.write_labels = false;
  const std::string path = write_raw(dir.file("d.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr(path), HasSubstr("missing dataset /labels")));
}

TEST(Inspect, WrongImageDtype) {
  TempDir dir;
  RawSpec spec;
  spec.float_images = true;
  const std::string path = write_raw(dir.file("d.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              HasSubstr("/images in " + path + ": expected uint8, found float32"));
}

TEST(Inspect, WrongImageRank) {
  TempDir dir;
  RawSpec spec;
  spec.image_shape = {10, 28, 28};
  const std::string path = write_raw(dir.file("d.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr("/images in " + path), HasSubstr("expected rank 4"),
                    HasSubstr("found rank 3 [10, 28, 28]")));
}

TEST(Inspect, InconsistentExampleCount) {
  TempDir dir;
  RawSpec spec;
  spec.label_shape = {9};
  const std::string path = write_raw(dir.file("d.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr("/labels in " + path), HasSubstr("9 rows"), HasSubstr("10")));
}

TEST(Inspect, LabelOutOfRange) {
  TempDir dir;
  RawSpec spec;
  spec.labels[7] = 12;
  const std::string path = write_raw(dir.file("d.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr("/labels in " + path), HasSubstr("example 7"), HasSubstr("label 12"),
                    HasSubstr("[0, 10)")));
  spec.labels[7] = -1;
  write_raw(path, spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr("example 7"), HasSubstr("label -1")));
}

// The bad label sits in the second validation block, so the reported index
// must include the block offset.
TEST(Inspect, LabelOutOfRangeInALaterBlock) {
  TempDir dir;
  const int64_t n = (int64_t{1} << 20) + 100;
  RawSpec spec;
  spec.image_shape = {n, 1, 1, 1};
  spec.label_shape = {n};
  spec.labels.assign(n, 3);
  spec.labels[n - 42] = 10;
  const std::string path = write_raw(dir.file("d.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr("example " + std::to_string(n - 42)), HasSubstr("label 10")));
}

TEST(Inspect, NumClassesAndClassNames) {
  TempDir dir;
  RawSpec spec;
  spec.num_classes.reset();
  std::string path = write_raw(dir.file("a.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr(path), HasSubstr("missing attribute num_classes")));
  spec.num_classes = 0;
  path = write_raw(dir.file("b.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr(path), HasSubstr("num_classes must be in [1, 2^31), found 0")));
  spec.num_classes = 10;
  spec.class_names = std::vector<std::string>{"only", "three", "names"};
  path = write_raw(dir.file("c.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr(path), HasSubstr("class_names has 3 names but num_classes is 10")));
  spec.class_names.reset();
  path = write_raw(dir.file("d.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }), HasSubstr("missing attribute class_names"));
}

TEST(Inspect, Superclass) {
  TempDir dir;
  RawSpec spec;
  spec.superclass = std::vector<int32_t>(10, 1);
  EXPECT_TRUE(inspect_dataset(write_raw(dir.file("ok.h5"), spec)).has_superclass);
  (*spec.superclass)[4] = -3;
  const std::string path = write_raw(dir.file("bad.h5"), spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr("/superclass in " + path), HasSubstr("example 4"),
                    HasSubstr("superclass -3"), HasSubstr(">= 0")));
  spec.superclass = std::vector<int32_t>(11, 1);
  write_raw(path, spec);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }), HasSubstr("has 11 rows"));
}

TEST(Inspect, MultiHotLabels) {
  TempDir dir;
  const std::string good =
      write_synthetic(dir.file("good.h5"), {.size = 30, .num_classes = 6, .multi_label = true});
  const DatasetInfo info = inspect_dataset(good);
  EXPECT_TRUE(info.multi_label);
  EXPECT_EQ(info.num_classes, 6);

  auto write_multi_hot = [&](const std::string& path, int64_t k, uint8_t bad_value) {
    h5::File file = h5::File::create(path);
    std::vector<uint8_t> pixels(4 * 2 * 2, 0), labels(4 * k, 0);
    labels[2 * k + 1] = bad_value;
    file.create_dataset<uint8_t>("/images", contiguous({4, 2, 2, 1}))
        .write_rows(0, 4, pixels.data());
    file.create_dataset<uint8_t>("/labels", contiguous({4, k})).write_rows(0, 4, labels.data());
    file.write_int64_attribute("num_classes", 3);
    file.write_strings_attribute("class_names", {"x", "y", "z"});
    file.close();
    return path;
  };
  std::string path = write_multi_hot(dir.file("two.h5"), 3, 2);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              AllOf(HasSubstr("/labels in " + path), HasSubstr("example 2"), HasSubstr("value 2"),
                    HasSubstr("0 or 1")));
  path = write_multi_hot(dir.file("width.h5"), 4, 1);
  EXPECT_THAT(error_of([&] { inspect_dataset(path); }),
              HasSubstr("multi-hot width is 4 but num_classes is 3"));
}

TEST(DatasetWriter, RejectsBadLabelsAndLeavesNoPartialFile) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  {
    DatasetWriter writer(
        path,
        {.height = 1, .width = 1, .channels = 1, .num_classes = 2, .class_names = {"no", "yes"}});
    const uint8_t pixels[3] = {1, 2, 3};
    const int32_t labels[3] = {0, 1, 2};
    EXPECT_TRUE(std::filesystem::exists(path + ".partial"));
    EXPECT_THAT(
        error_of([&] { writer.append({.count = 3, .images = pixels, .labels = labels}); }),
        AllOf(HasSubstr(path), HasSubstr("example 2"), HasSubstr("label 2"), HasSubstr("[0, 2)")));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  EXPECT_THAT(
      error_of([&] {
        DatasetWriter(
            path, {.height = 1, .width = 1, .channels = 1, .num_classes = 3, .class_names = {"a"}});
      }),
      HasSubstr("got 1 class names for 3 classes"));
}

}  // namespace
}  // namespace vmoe
