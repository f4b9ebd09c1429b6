// IDX and CIFAR readers and the importers, including the real Fashion-MNIST
// test split end to end through the loader.
#include <zlib.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/check.h"
#include "core/h5.h"
#include "datasets/augment.h"
#include "datasets/idx_reader.h"
#include "datasets/image_resize.h"
#include "datasets/importer.h"
#include "datasets/loader.h"
#include "tests/dataset_files.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::error_of;

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TempDir;

constexpr char kFashionDir[] = "/usr/share/datasets/fashion-mnist";


std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                               uint8_t type = 0x08) {
  std::vector<uint8_t> out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

std::vector<uint8_t> read_images(const std::string& path, int64_t n, int64_t image_bytes) {
  const h5::File file = h5::File::open_read(path);
  std::vector<uint8_t> out(n * image_bytes);
  file.dataset("/images").read_rows(0, n, out.data());
  return out;
}

std::vector<int32_t> read_int32(const std::string& path, const std::string& name, int64_t n) {
  const h5::File file = h5::File::open_read(path);
  std::vector<int32_t> out(n);
  file.dataset(name).read_rows(0, n, out.data());
  return out;
}

TEST(IdxReader, ReadsGzipAndPlainFiles) {
  TempDir dir;
  std::vector<uint8_t> data(3 * 2 * 4);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 9);
  write_file(dir.file("plain"), idx_bytes({3, 2, 4}, data));
  write_gz(dir.file("packed.gz"), idx_bytes({3, 2, 4}, data));
  for (const std::string name : {"plain", "packed.gz"}) {
    IdxReader reader(dir.file(name));
    EXPECT_EQ(reader.dims(), (std::vector<int64_t>{3, 2, 4}));
    EXPECT_EQ(reader.count(), 3);
    EXPECT_EQ(reader.item_bytes(), 8);
    std::vector<uint8_t> got(24);
    reader.read(1, got.data());
    reader.read(2, got.data() + 8);
    EXPECT_EQ(got, data);
    EXPECT_NO_THROW(reader.expect_end());
  }
}

TEST(IdxReader, Errors) {
  TempDir dir;
  const std::vector<uint8_t> data(2 * 3, 1);
  std::vector<uint8_t> bad_magic = idx_bytes({2, 3}, data);
  bad_magic[0] = 0x1f;
  write_file(dir.file("magic"), bad_magic);
  EXPECT_THAT(error_of([&] { IdxReader r(dir.file("magic")); }),
              AllOf(HasSubstr(dir.file("magic")), HasSubstr("bad IDX magic number 0x1F000802")));

  write_file(dir.file("float"), idx_bytes({2, 3}, data, 0x0D));
  EXPECT_THAT(error_of([&] { IdxReader r(dir.file("float")); }),
              HasSubstr("IDX element type 0x0D is not supported"));

  write_file(dir.file("header"), {0, 0, 8, 3, 0, 0});
  EXPECT_THAT(error_of([&] { IdxReader r(dir.file("header")); }),
              AllOf(HasSubstr(dir.file("header")), HasSubstr("truncated IDX header")));

  // Data cut short, plain and compressed.
  std::vector<uint8_t> cut = idx_bytes({4, 3}, data);
  write_file(dir.file("cut"), cut);
  write_gz(dir.file("cut.gz"), cut);
  for (const std::string name : {"cut", "cut.gz"}) {
    IdxReader reader(dir.file(name));
    std::vector<uint8_t> out(12);
    EXPECT_THAT(error_of([&] { reader.read(4, out.data()); }),
                AllOf(HasSubstr(dir.file(name)), HasSubstr("truncated"), HasSubstr("4 items"),
                      HasSubstr("ends inside item 2")));
  }
  // A real gzip file cut in half.
  {
    std::ifstream in(std::string(kFashionDir) + "/t10k-labels-idx1-ubyte.gz", std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_GT(bytes.size(), 1000u);
    write_file(dir.file("half.gz"),
               std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
    IdxReader reader(dir.file("half.gz"));
    std::vector<uint8_t> out(reader.count());
    EXPECT_THAT(error_of([&] { reader.read(reader.count(), out.data()); }), HasSubstr("truncated"));
  }

  std::vector<uint8_t> extra = idx_bytes({2, 3}, data);
  extra.push_back(0);
  write_file(dir.file("extra"), extra);
  IdxReader reader(dir.file("extra"));
  std::vector<uint8_t> out(6);
  reader.read(2, out.data());
  EXPECT_THAT(error_of([&] { reader.expect_end(); }),
              HasSubstr("unexpected data after the 2 items"));

  EXPECT_THAT(error_of([&] { IdxReader r(dir.file("absent")); }), HasSubstr("no such file"));
}

// The real test split: every pixel and label the loader returns must be the
// IDX file's, including the padded last batch.
TEST(FashionMnist, LoaderReturnsExactlyTheIdxData) {
  TempDir dir;
  const std::vector<DatasetInfo> infos = import_fashion_mnist(kFashionDir, dir.file("out"));
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[0].size, 60000);
  const DatasetInfo& test = infos[1];
  EXPECT_EQ(test.path, dir.file("out/test.h5"));
  EXPECT_EQ(test.size, 10000);
  EXPECT_EQ(test.height, 28);
  EXPECT_EQ(test.width, 28);
  EXPECT_EQ(test.channels, 1);
  EXPECT_EQ(test.num_classes, 10);
  EXPECT_EQ(test.class_names.front(), "T-shirt/top");
  EXPECT_EQ(test.class_names.back(), "Ankle boot");

  IdxReader images(std::string(kFashionDir) + "/t10k-images-idx3-ubyte.gz");
  IdxReader labels(std::string(kFashionDir) + "/t10k-labels-idx1-ubyte.gz");
  std::vector<uint8_t> pixels(10000 * 784), label_bytes(10000);
  images.read(10000, pixels.data());
  labels.read(10000, label_bytes.data());

  constexpr int64_t kBatch = 384;  // 10000 = 26 * 384 + 16: the last batch is padded
  for (int world : {1, 2}) {
    for (int rank = 0; rank < world; ++rank) {
      Loader loader({.path = test.path,
                     .batch_size = kBatch,
                     .rank = rank,
                     .world = world,
                     .training = false});
      ASSERT_EQ(loader.num_batches(), 27);
      const int b = static_cast<int>(kBatch / world);
      Batch batch;
      int64_t batches = 0, real = 0;
      while (loader.next(batch)) {
        ASSERT_EQ(batch.rows, b);
        for (int j = 0; j < b; ++j) {
          const int64_t e = batch.step * kBatch + rank * b + j;
          if (e >= 10000) {
            ASSERT_EQ(batch.mask[j], 0);
            ASSERT_EQ(batch.index[j], -1);
            continue;
          }
          ASSERT_EQ(batch.mask[j], 1);
          ASSERT_EQ(batch.index[j], e);
          ASSERT_EQ(batch.labels[j], label_bytes[e]) << "example " << e;
          for (int k = 0; k < 784; ++k) {
            ASSERT_EQ(batch.images[j * 784 + k], scale_pixel(pixels[e * 784 + k]))
                << "example " << e << " pixel " << k;
          }
          ++real;
        }
        ++batches;
      }
      EXPECT_EQ(batches, 27);
      EXPECT_EQ(real, world == 1 ? 10000 : (rank == 0 ? 26 * 192 + 16 : 26 * 192));
    }
  }
}

TEST(FashionMnist, FailedImportLeavesNoFile) {
  TempDir dir;
  const std::filesystem::path in = dir.path() / "in";
  std::filesystem::create_directories(in);
  for (const std::string name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}) {
    std::filesystem::copy_file(std::string(kFashionDir) + "/" + name, in / name);
  }
  // The test split is missing.
  EXPECT_THAT(error_of([&] { import_fashion_mnist(in.string(), dir.file("out")); }),
              AllOf(HasSubstr(in.string()), HasSubstr("missing t10k-images-idx3-ubyte.gz")));
  // Labels that promise more items than the images: no test.h5, no partial file.
  write_file((in / "t10k-images-idx3-ubyte").string(),
             idx_bytes({2, 2, 2}, std::vector<uint8_t>(8)));
  write_file((in / "t10k-labels-idx1-ubyte").string(), idx_bytes({3}, {1, 2, 3}));
  EXPECT_THAT(error_of([&] { import_fashion_mnist(in.string(), dir.file("out")); }),
              HasSubstr("has 2 images but"));
  EXPECT_TRUE(std::filesystem::exists(dir.file("out/train.h5")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/test.h5")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/test.h5.partial")));
}

// CIFAR record i: planar pixel value for channel c and pixel p.
uint8_t cifar_value(int64_t record, int c, int p) {
  return static_cast<uint8_t>((record * 13 + c * 50 + p * 7) & 255);
}

void write_cifar(const std::string& path, int64_t first, int64_t n, bool cifar100) {
  std::vector<uint8_t> bytes;
  for (int64_t r = first; r < first + n; ++r) {
    if (cifar100) bytes.push_back(static_cast<uint8_t>(r % 20));  // coarse
    bytes.push_back(static_cast<uint8_t>(cifar100 ? r % 100 : r % 10));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) bytes.push_back(cifar_value(r, c, p));
  }
  write_file(path, bytes);
}

void expect_cifar_images(const std::string& h5_path, int64_t first, int64_t n) {
  const std::vector<uint8_t> got = read_images(h5_path, n, 3072);
  for (int64_t i = 0; i < n; ++i) {
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        for (int c = 0; c < 3; ++c)
          ASSERT_EQ(got[i * 3072 + (y * 32 + x) * 3 + c], cifar_value(first + i, c, y * 32 + x))
              << h5_path << " record " << i << " y " << y << " x " << x << " c " << c;
  }
}

TEST(Cifar, ImportsCifar10) {
  TempDir dir;
  const std::filesystem::path in = dir.path() / "cifar-10-batches-bin";
  std::filesystem::create_directories(in);
  for (int b = 1; b <= 5; ++b) {
    write_cifar((in / ("data_batch_" + std::to_string(b) + ".bin")).string(), (b - 1) * 3, 3,
                false);
  }
  write_cifar((in / "test_batch.bin").string(), 100, 2, false);
  // The parent folder works too; standard names when batches.meta.txt is absent.
  std::vector<DatasetInfo> infos = import_cifar10(dir.path().string(), dir.file("out"));
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[0].size, 15);
  EXPECT_EQ(infos[1].size, 2);
  EXPECT_EQ(infos[0].height, 32);
  EXPECT_EQ(infos[0].channels, 3);
  EXPECT_FALSE(infos[0].has_superclass);
  EXPECT_EQ(infos[0].class_names[0], "airplane");
  EXPECT_EQ(infos[0].class_names[9], "truck");
  expect_cifar_images(infos[0].path, 0, 15);
  expect_cifar_images(infos[1].path, 100, 2);
  std::vector<int32_t> want(15);
  for (int i = 0; i < 15; ++i) want[i] = i % 10;
  EXPECT_EQ(read_int32(infos[0].path, "/labels", 15), want);

  std::ofstream(in / "batches.meta.txt") << "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n";
  infos = import_cifar10(in.string(), dir.file("out"));
  EXPECT_EQ(infos[1].class_names[9], "j");
  std::ofstream(in / "batches.meta.txt") << "a\nb\n";
  EXPECT_THAT(error_of([&] { import_cifar10(in.string(), dir.file("out")); }),
              HasSubstr("expected 10 class names (one per line), found 2"));
}

// --image_size and --channels on a public format: every image goes through
// fit_image (tested on its own in image_import_test.cpp).
TEST(Cifar, ImageOptionsConvertEveryImage) {
  TempDir dir;
  for (int b = 1; b <= 5; ++b)
    write_cifar(dir.file("data_batch_" + std::to_string(b) + ".bin"), (b - 1) * 2, 2, false);
  write_cifar(dir.file("test_batch.bin"), 50, 3, false);
  const std::vector<DatasetInfo> infos = import_cifar10(dir.path().string(), dir.file("out"),
                                                        {.height = 12, .width = 20, .channels = 1});
  EXPECT_EQ(infos[1].size, 3);
  EXPECT_EQ(infos[1].height, 12);
  EXPECT_EQ(infos[1].width, 20);
  EXPECT_EQ(infos[1].channels, 1);
  const std::vector<uint8_t> got = read_images(infos[1].path, 3, 12 * 20);
  for (int64_t i = 0; i < 3; ++i) {
    Image source{32, 32, 3, std::vector<uint8_t>(3072)};
    for (int p = 0; p < 1024; ++p)
      for (int c = 0; c < 3; ++c) source.pixels[p * 3 + c] = cifar_value(50 + i, c, p);
    const Image want = fit_image(source, 12, 20, 1);
    EXPECT_EQ(std::vector<uint8_t>(got.begin() + i * 240, got.begin() + (i + 1) * 240), want.pixels)
        << "record " << i;
  }
}

TEST(Cifar, ImportsCifar100WithSuperclasses) {
  TempDir dir;
  write_cifar(dir.file("train.bin"), 0, 7, true);
  write_cifar(dir.file("test.bin"), 95, 10, true);
  const std::vector<DatasetInfo> infos = import_cifar100(dir.path().string(), dir.file("out"));
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[1].size, 10);
  EXPECT_EQ(infos[1].num_classes, 100);
  EXPECT_TRUE(infos[1].has_superclass);
  EXPECT_EQ(infos[1].class_names[0], "apple");
  EXPECT_EQ(infos[1].class_names[99], "worm");
  expect_cifar_images(infos[1].path, 95, 10);
  std::vector<int32_t> fine, coarse;
  for (int r = 95; r < 105; ++r) {
    fine.push_back(r % 100);
    coarse.push_back(r % 20);
  }
  EXPECT_EQ(read_int32(infos[1].path, "/labels", 10), fine);
  EXPECT_EQ(read_int32(infos[1].path, "/superclass", 10), coarse);
}

TEST(Cifar, Errors) {
  TempDir dir;
  write_cifar(dir.file("train.bin"), 0, 3, true);
  std::vector<uint8_t> cut(3074 * 2 - 5, 0);
  write_file(dir.file("test.bin"), cut);
  EXPECT_THAT(error_of([&] { import_cifar100(dir.path().string(), dir.file("out")); }),
              AllOf(HasSubstr(dir.file("test.bin")), HasSubstr("not a positive multiple"),
                    HasSubstr("3074")));
  std::vector<uint8_t> bad(3074 * 2, 0);
  bad[3074 + 1] = 100;  // fine label of record 1
  write_file(dir.file("test.bin"), bad);
  EXPECT_THAT(error_of([&] { import_cifar100(dir.path().string(), dir.file("out")); }),
              AllOf(HasSubstr(dir.file("test.bin")), HasSubstr("record 1 has label 100"),
                    HasSubstr("[0, 100)")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out/test.h5")));
  EXPECT_THAT(error_of([&] { import_cifar10(dir.path().string(), dir.file("out")); }),
              AllOf(HasSubstr("missing data_batch_1.bin")));
  EXPECT_THAT(error_of([&] { import_dataset("mnist", dir.path().string(), dir.file("out")); }),
              HasSubstr("unknown format 'mnist'"));
  EXPECT_THAT(error_of([&] { import_cifar10(dir.file("nowhere"), dir.file("out")); }),
              HasSubstr("no such directory"));
}

}  // namespace
}  // namespace vmoe
