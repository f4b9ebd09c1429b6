// import_png_folder end to end on small folders of PNGs written with libpng:
// both layouts, class order, output order, channel and size conversion, the
// seeded split, and every kind of bad input.
#include <png.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/h5.h"
#include "datasets/importer.h"
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

// A height x width PNG in `format` whose sample k holds base + k (mod 256),
// so every image can be recognised in the output by its first sample.
void put_png(const fs::path& path, int base, png_uint_32 format = PNG_FORMAT_GRAY, int height = 2,
             int width = 3) {
  fs::create_directories(path.parent_path());
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = format;
  std::vector<uint8_t> pixels(PNG_IMAGE_SIZE(image));
  for (size_t k = 0; k < pixels.size(); ++k) pixels[k] = static_cast<uint8_t>((base + k) & 255);
  ASSERT_NE(png_image_write_to_file(&image, path.c_str(), 0, pixels.data(), 0, nullptr), 0)
      << image.message;
}

// First sample of every image: which source files were written, in order.
std::vector<int> bases(const Split& s) {
  std::vector<int> out;
  const int64_t bytes = int64_t{s.info.height} * s.info.width * s.info.channels;
  for (int64_t i = 0; i < s.info.size; ++i) out.push_back(s.images[i * bytes]);
  return out;
}

TEST(PngFolder, TrainTestLayoutKeepsPixelsAndInterleavesClasses) {
  TempDir dir;
  const fs::path in = dir.path() / "in";
  put_png(in / "train/b/y.png", 50);
  put_png(in / "train/b/x.png", 40);
  put_png(in / "train/a/c.png", 10);
  put_png(in / "train/a/a.png", 0);
  put_png(in / "train/a/B.PNG", 20);  // extension case does not matter; 'B' < 'a'
  put_png(in / "test/a/t.png", 100);
  put_png(in / "test/b/u.png", 110);
  // Ignored: other files, hidden files and folders.
  std::ofstream(in / "train/a/notes.txt") << "not an image";
  put_png(in / "train/a/.hidden.png", 200);
  fs::create_directories(in / "train/.cache");
  fs::create_directories(in / "test/.cache");

  const std::vector<DatasetInfo> infos =
      import_png_folder(in.string(), dir.file("out"), ImageImportOptions{});
  ASSERT_EQ(infos.size(), 2u);
  const Split train = read_split(dir.file("out/train.h5")),
              test = read_split(dir.file("out/test.h5"));
  EXPECT_EQ(train.info.height, 2);
  EXPECT_EQ(train.info.width, 3);
  EXPECT_EQ(train.info.channels, 1);
  EXPECT_EQ(train.info.num_classes, 2);
  EXPECT_THAT(train.info.class_names, ElementsAre("a", "b"));
  // a = [B.PNG 20, a.png 0, c.png 10] at 1/6, 3/6, 5/6; b = [x 40, y 50] at 1/4, 3/4.
  EXPECT_THAT(bases(train), ElementsAre(20, 40, 0, 50, 10));
  EXPECT_THAT(train.labels, ElementsAre(0, 1, 0, 1, 0));
  for (int64_t i = 0; i < 5; ++i)
    for (int k = 0; k < 6; ++k)
      ASSERT_EQ(train.images[i * 6 + k], bases(train)[i] + k) << "example " << i << " pixel " << k;
  EXPECT_THAT(bases(test), ElementsAre(100, 110));
  EXPECT_THAT(test.labels, ElementsAre(0, 1));
  EXPECT_EQ(test.info.class_names, train.info.class_names);
}

TEST(PngFolder, MixedFormatsBecomeRgbOrGray) {
  TempDir dir;
  const fs::path in = dir.path() / "in";
  put_png(in / "train/a/gray.png", 10, PNG_FORMAT_GRAY);
  put_png(in / "train/b/rgb.png", 100, PNG_FORMAT_RGB);
  put_png(in / "test/a/ga.png", 30, PNG_FORMAT_GA);
  put_png(in / "test/b/rgba.png", 60, PNG_FORMAT_RGBA);
  // One gray source among color ones: 3 channels by default, gray replicated.
  import_png_folder(in.string(), dir.file("rgb"), ImageImportOptions{});
  Split train = read_split(dir.file("rgb/train.h5")), test = read_split(dir.file("rgb/test.h5"));
  EXPECT_EQ(train.info.channels, 3);
  EXPECT_THAT(std::vector<uint8_t>(train.images.begin(), train.images.begin() + 6),
              ElementsAre(10, 10, 10, 11, 11, 11));
  EXPECT_THAT(std::vector<uint8_t>(train.images.begin() + 18, train.images.begin() + 24),
              ElementsAre(100, 101, 102, 103, 104, 105));
  // Gray+alpha 30, (31), 32, (33), ...; RGBA 60, 61, 62, (63), 64, ...: alpha dropped.
  EXPECT_THAT(std::vector<uint8_t>(test.images.begin(), test.images.begin() + 6),
              ElementsAre(30, 30, 30, 32, 32, 32));
  EXPECT_THAT(std::vector<uint8_t>(test.images.begin() + 18, test.images.begin() + 24),
              ElementsAre(60, 61, 62, 64, 65, 66));

  // --channels=1: RGB through the BT.601 weights, gray unchanged.
  import_png_folder(in.string(), dir.file("gray"), ImageImportOptions{.channels = 1});
  train = read_split(dir.file("gray/train.h5"));
  EXPECT_EQ(train.info.channels, 1);
  // round(.299 * 100 + .587 * 101 + .114 * 102) = round(100.815).
  EXPECT_THAT(train.images, ElementsAre(10, 11, 12, 13, 14, 15, 101, 104, 107, 110, 113, 116));
}

TEST(PngFolder, SizesMustAgreeUnlessResized) {
  TempDir dir;
  const fs::path in = dir.path() / "in";
  put_png(in / "train/a/small.png", 0, PNG_FORMAT_GRAY, 2, 2);
  put_png(in / "train/b/big.png", 1, PNG_FORMAT_GRAY, 4, 4);
  put_png(in / "test/a/t.png", 2, PNG_FORMAT_GRAY, 2, 2);
  put_png(in / "test/b/u.png", 3, PNG_FORMAT_GRAY, 2, 2);
  EXPECT_THAT(error_of([&] { import_png_folder(in.string(), dir.file("out"), {}); }),
              AllOf(HasSubstr((in / "train/b/big.png").string() + ": image is 4x4 but "),
                    HasSubstr("small.png is 2x2"), HasSubstr("--image_size=HxW")));
  EXPECT_FALSE(fs::exists(dir.file("out/train.h5")));
  import_png_folder(in.string(), dir.file("out"), {.height = 2, .width = 2});
  const Split train = read_split(dir.file("out/train.h5"));
  EXPECT_EQ(train.info.height, 2);
  // big.png holds 1..16: each output pixel is the mean of a 2x2 block, rounded up.
  EXPECT_THAT(std::vector<uint8_t>(train.images.begin() + 4, train.images.end()),
              ElementsAre(4, 6, 12, 14));
}

TEST(PngFolder, FlatLayoutSplitsEachClassBySeed) {
  TempDir dir;
  const fs::path in = dir.path() / "in";
  for (int i = 0; i < 10; ++i) put_png(in / "a" / ("img" + std::to_string(i) + ".png"), i);
  for (int i = 0; i < 3; ++i) put_png(in / "b" / ("img" + std::to_string(i) + ".png"), 20 + i);
  put_png(in / "c/only.png", 30);
  std::ofstream(in / "README.txt") << "top-level files are ignored";

  EXPECT_THAT(error_of([&] { import_png_folder(in.string(), dir.file("out"), {}); }),
              AllOf(HasSubstr(in.string()), HasSubstr("pass --test_fraction (e.g. 0.2)")));

  auto split = [&](uint64_t seed, const std::string& out) {
    import_png_folder(in.string(), dir.file(out), {.test_fraction = 0.3, .split_seed = seed});
    return std::pair{read_split(dir.file(out + "/train.h5")),
                     read_split(dir.file(out + "/test.h5"))};
  };
  const auto [train, test] = split(7, "s7");
  EXPECT_THAT(train.info.class_names, ElementsAre("a", "b", "c"));
  // round(0.3 * n), but every class keeps one training image: a 3, b 1, c 0.
  std::map<int32_t, int> test_count, train_count;
  for (int32_t label : test.labels) ++test_count[label];
  for (int32_t label : train.labels) ++train_count[label];
  EXPECT_EQ(test_count, (std::map<int32_t, int>{{0, 3}, {1, 1}}));
  EXPECT_EQ(train_count, (std::map<int32_t, int>{{0, 7}, {1, 2}, {2, 1}}));
  // Every file exactly once; each class in name order within a split.
  std::vector<int> all = bases(train), test_bases = bases(test);
  all.insert(all.end(), test_bases.begin(), test_bases.end());
  std::sort(all.begin(), all.end());
  EXPECT_THAT(all, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 22, 30));
  std::vector<int> test_a;
  for (size_t i = 0; i < test.labels.size(); ++i)
    if (test.labels[i] == 0) test_a.push_back(test_bases[i]);
  EXPECT_TRUE(std::is_sorted(test_a.begin(), test_a.end()));

  // Deterministic for a seed; another seed picks other files.
  const auto [train_again, test_again] = split(7, "again");
  EXPECT_EQ(test_again.images, test.images);
  EXPECT_EQ(train_again.images, train.images);
  const auto [train_other, test_other] = split(8, "s8");
  EXPECT_NE(bases(test_other), test_bases);

  // 0.6: a 6, b round(1.8) = 2, c round(0.6) = 1 but capped at n - 1 = 0.
  import_png_folder(in.string(), dir.file("s6"), {.test_fraction = 0.6});
  EXPECT_EQ(read_split(dir.file("s6/test.h5")).info.size, 8);
  // Train a 4 at 1/8, 3/8, 5/8, 7/8; b and c 1 each at 1/2.
  EXPECT_THAT(read_split(dir.file("s6/train.h5")).labels, ElementsAre(0, 0, 1, 2, 0, 0));

  EXPECT_THAT(
      error_of([&] { import_png_folder(in.string(), dir.file("x"), {.test_fraction = 0.01}); }),
      HasSubstr("selects no test images"));
}

TEST(PngFolder, Errors) {
  TempDir dir;
  const fs::path in = dir.path() / "in";
  auto run = [&](const ImageImportOptions& options = {}) {
    return error_of([&] { import_png_folder(in.string(), dir.file("out"), options); });
  };
  EXPECT_THAT(run(), AllOf(HasSubstr(in.string()), HasSubstr("no such directory")));
  fs::create_directories(in);
  EXPECT_THAT(run({.test_fraction = 0.2}),
              AllOf(HasSubstr(in.string()), HasSubstr("no class folders")));
  put_png(in / "train/cat/1.png", 0);
  EXPECT_THAT(run(), AllOf(HasSubstr("has train/ but no test/ folder")));
  put_png(in / "test/dog/1.png", 0);
  EXPECT_THAT(run(), AllOf(HasSubstr((in / "train").string() + " and " + (in / "test").string() +
                                     " have different class folders"),
                           HasSubstr("'cat' is in " + (in / "train").string() + " but not in ")));
  put_png(in / "test/cat/1.png", 0);
  EXPECT_THAT(run(), HasSubstr("'dog' is in " + (in / "test").string() + " but not in "));
  fs::create_directories(in / "train/dog");
  EXPECT_THAT(run(), AllOf(HasSubstr((in / "train/dog").string()),
                           HasSubstr("empty class folder (no .png files)")));
  std::ofstream(in / "train/dog/fake.png") << "GIF89a";
  EXPECT_THAT(run(),
              AllOf(HasSubstr((in / "train/dog/fake.png").string()), HasSubstr("not a PNG file")));
  fs::remove(in / "train/dog/fake.png");
  put_png(in / "train/dog/1.png", 0);
  EXPECT_THAT(run({.test_fraction = 0.2}), HasSubstr("--test_fraction does not apply"));
  EXPECT_THAT(run({.channels = 2}), HasSubstr("--channels must be 1 or 3, got 2"));
  EXPECT_THAT(run({.test_fraction = 1.0}), HasSubstr("--test_fraction must be in [0, 1)"));
  EXPECT_FALSE(fs::exists(dir.file("out/train.h5")));
  EXPECT_NO_THROW(import_png_folder(in.string(), dir.file("out"), {}));
  // Through the dispatcher; a split of the public formats is not a --test_fraction.
  EXPECT_EQ(import_dataset("png_folder", in.string(), dir.file("out"), {}).at(1).size, 2);
  EXPECT_THAT(error_of([&] {
                import_dataset("cifar10", in.string(), dir.file("out"), {.test_fraction = 0.5});
              }),
              HasSubstr("--test_fraction applies to --format=png_folder only"));
  EXPECT_THAT(error_of([&] { import_dataset("jpeg", in.string(), dir.file("out"), {}); }),
              HasSubstr("unknown format 'jpeg'"));
}

}  // namespace
}  // namespace vmoe
