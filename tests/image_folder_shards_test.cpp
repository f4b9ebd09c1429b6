// vmoe_import --format=image_folder (import_image_folder): JPEG and PNG files
// made with libjpeg-turbo's and libpng's encoders are stored byte for byte in
// sharded encoded datasets, with their labels and class names; splits,
// resume, ranks sharing the shards, and bad files (named, or skipped).
#include <filesystem>
#include <fstream>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/h5.h"
#include "core/h5_vlen.h"
#include "datasets/dataset_info.h"
#include "datasets/image_codec.h"
#include "datasets/image_folder_shards.h"
#include "datasets/schema.h"
#include "tests/dataset_files.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using testing::error_of;
using ::testing::HasSubstr;
using testing::TempDir;

// A small image whose pixels depend on `seed`, encoded as JPEG or PNG.
std::vector<uint8_t> make_image(int seed, bool png, int channels = 3) {
  Image image{.height = 8 + seed % 5, .width = 9 + seed % 3, .channels = channels, .pixels = {}};
  image.pixels.resize(static_cast<size_t>(image.height) * image.width * channels);
  for (size_t i = 0; i < image.pixels.size(); ++i)
    image.pixels[i] = static_cast<uint8_t>(seed * 31 + i * 7);
  return png ? encode_png(image) : encode_jpeg(image, 90);
}

void put(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

// Every (bytes, label) stored in the shards matching dir/split-*.h5, in shard order.
std::vector<std::pair<std::vector<uint8_t>, int32_t>> stored(const fs::path& dir,
                                                             const std::string& split) {
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(split + "-") && e.path().extension() == ".h5")
      shards.push_back(e.path());
  std::sort(shards.begin(), shards.end());
  std::vector<std::pair<std::vector<uint8_t>, int32_t>> out;
  for (const fs::path& shard : shards) {
    const h5::File file = h5::File::open_read(shard.string());
    const h5::Dataset images = file.dataset(schema::kImages);
    const int64_t n = inspect_dataset(shard.string()).size;
    std::vector<int64_t> rows(n);
    for (int64_t i = 0; i < n; ++i) rows[i] = i;
    std::vector<uint8_t> data;
    std::vector<int64_t> offsets;
    h5::read_vlen_rows<uint8_t>(images, rows, data, offsets);
    std::vector<int32_t> labels(n);
    file.dataset(schema::kLabels).read_rows<int32_t>(0, n, labels.data());
    for (int64_t i = 0; i < n; ++i)
      out.push_back({std::vector<uint8_t>(data.begin() + offsets[i], data.begin() + offsets[i + 1]),
                     labels[i]});
  }
  return out;
}

// DIR/train/{cat,dog,eel}/ and DIR/val/{cat,dog,eel}/: JPEG and PNG, upper-
// and lower-case extensions, a gray image, and files that are not images by
// name (ignored). Returns each file's bytes by class.
std::map<std::string, std::vector<std::vector<uint8_t>>> make_folder(const fs::path& dir,
                                                                     const std::string& split,
                                                                     int per_class) {
  std::map<std::string, std::vector<std::vector<uint8_t>>> bytes;
  int seed = split == "train" ? 0 : 1000;
  for (const char* cls : {"cat", "dog", "eel"}) {
    for (int i = 0; i < per_class; ++i, ++seed) {
      const bool png = i % 3 == 2;
      const std::vector<uint8_t> b = make_image(seed, png, i % 4 == 3 ? 1 : 3);
      char name[32];
      std::snprintf(name, sizeof name, "img_%03d%s", i, png ? ".png" : (i % 2 ? ".JPEG" : ".jpg"));
      put(dir / split / cls / name, b);
      bytes[cls].push_back(b);
    }
    put(dir / split / cls / "notes.txt", {'h', 'i'});
  }
  return bytes;
}

ImageFolderImport options(const fs::path& in, const fs::path& out) {
  ImageFolderImport o;
  o.input_dir = in.string();
  o.output_dir = out.string();
  o.height = o.width = 16;
  o.images_per_shard = 4;
  o.threads = 2;
  return o;
}

TEST(ImageFolderShards, StoresTheSourceBytesWithLabelsAndClassNames) {
  TempDir tmp;
  const auto train = make_folder(tmp.path(), "train", 5);
  const auto val = make_folder(tmp.path(), "val", 2);
  const ImageFolderResult r = import_image_folder(options(tmp.path(), tmp.path() / "out"));
  EXPECT_THAT(r.class_names, ElementsAre("cat", "dog", "eel"));
  ASSERT_EQ(r.splits.size(), 2u);
  EXPECT_EQ(r.splits[0].files, 15);
  EXPECT_EQ(r.splits[0].shards, 4);
  EXPECT_EQ(r.splits[1].name, "test");
  EXPECT_EQ(r.written, 21);
  const DatasetInfo info = inspect_dataset((tmp.path() / "out/train-00000-of-00004.h5").string());
  EXPECT_TRUE(info.encoded);
  EXPECT_EQ(info.height, 16);
  EXPECT_EQ(info.channels, 3);
  EXPECT_THAT(info.class_names, ElementsAre("cat", "dog", "eel"));
  for (const auto& [split, source] : {std::pair{"train", &train}, std::pair{"test", &val}}) {
    // Each class's files, in name order, are stored byte for byte with its label.
    std::map<int32_t, std::vector<std::vector<uint8_t>>> got;
    for (auto& [bytes, label] : stored(tmp.path() / "out", split)) got[label].push_back(bytes);
    ASSERT_EQ(got.size(), 3u) << split;
    int32_t label = 0;
    for (const auto& [name, files] : *source)
      EXPECT_EQ(got[label++], files) << split << " " << name;
  }
}

TEST(ImageFolderShards, SplitsAClassFolderBySeedAndResumes) {
  TempDir tmp;
  make_folder(tmp.path(), "flat", 6);
  ImageFolderImport o = options(tmp.path() / "flat", tmp.path() / "out");
  o.test_fraction = 0.34;
  o.split_seed = 7;
  const ImageFolderResult first = import_image_folder(o);
  ASSERT_EQ(first.splits.size(), 2u);
  EXPECT_EQ(first.splits[0].files, 12);
  EXPECT_EQ(first.splits[1].files, 6);
  const auto train = stored(tmp.path() / "out", "train");
  // An interrupted import: one shard missing, one left half-written.
  fs::remove(tmp.path() / "out/train-00001-of-00003.h5");
  fs::remove(tmp.path() / "out/train-00002-of-00003.h5");
  put(tmp.path() / "out/train-00002-of-00003.h5.partial", {1, 2, 3});
  const ImageFolderResult again = import_image_folder(o);
  EXPECT_EQ(again.written, 8);
  EXPECT_EQ(again.kept, 10);
  EXPECT_FALSE(fs::exists(tmp.path() / "out/train-00002-of-00003.h5.partial"));
  EXPECT_EQ(stored(tmp.path() / "out", "train"), train);
  // Ranks share the shards; together they write what one process writes.
  for (int rank = 0; rank < 2; ++rank) {
    ImageFolderImport part = o;
    part.output_dir = (tmp.path() / "ranks").string();
    part.rank = rank;
    part.world = 2;
    import_image_folder(part);
  }
  EXPECT_EQ(stored(tmp.path() / "ranks", "train"), train);
  EXPECT_EQ(stored(tmp.path() / "ranks", "test"), stored(tmp.path() / "out", "test"));
}

// ImageNet's layout: train/<wnid>/ folders, a flat val/ folder whose classes
// come from a list, and a map from folder names to class names.
TEST(ImageFolderShards, FlatValFolderWithALabelListAndAClassMap) {
  TempDir tmp;
  make_folder(tmp.path(), "train", 2);
  std::map<int32_t, std::vector<std::vector<uint8_t>>> val;
  const char* classes[] = {"cat", "dog", "eel"};
  std::string one_per_line, file_and_class;
  for (int i = 0; i < 6; ++i) {
    const std::vector<uint8_t> b = make_image(500 + i, i % 2 == 1);
    char name[32];
    std::snprintf(name, sizeof name, "val_%02d%s", i, i % 2 == 1 ? ".png" : ".JPEG");
    put(tmp.path() / "val" / name, b);
    const int label = (i * 2) % 3;
    val[label].push_back(b);
    one_per_line += std::string(classes[label]) + "\n";                   // by class folder name
    file_and_class += str_cat("val_", i / 10, i % 10, " ", label, "\n");  // stem + label number
  }
  const fs::path list = tmp.path() / "labels.txt", pairs = tmp.path() / "pairs.txt",
                 map = tmp.path() / "map.txt";
  put(list, std::vector<uint8_t>(one_per_line.begin(), one_per_line.end()));
  put(pairs, std::vector<uint8_t>(file_and_class.begin(), file_and_class.end()));
  const std::string names = "cat Felis catus\ndog  Canis familiaris \nbird Aves\n";
  put(map, std::vector<uint8_t>(names.begin(), names.end()));
  EXPECT_THAT(error_of([&] { import_image_folder(options(tmp.path(), tmp.path() / "o")); }),
              HasSubstr("holds images, not class folders: pass --val_labels=FILE"));
  for (const fs::path& labels : {list, pairs}) {
    ImageFolderImport o = options(tmp.path(), tmp.path() / labels.stem());
    o.val_labels = labels.string();
    o.class_map = map.string();
    const ImageFolderResult r = import_image_folder(o);
    EXPECT_THAT(r.class_names, ElementsAre("Felis catus", "Canis familiaris", "eel"));
    std::map<int32_t, std::vector<std::vector<uint8_t>>> got;
    for (auto& [bytes, label] : stored(tmp.path() / labels.stem(), "test"))
      got[label].push_back(bytes);
    EXPECT_EQ(got, val) << labels;
  }
  const std::string bad = "cat\nwolf\ncat\ncat\ncat\ncat\n";
  put(list, std::vector<uint8_t>(bad.begin(), bad.end()));
  ImageFolderImport o = options(tmp.path(), tmp.path() / "bad");
  o.val_labels = list.string();
  EXPECT_THAT(
      error_of([&] { import_image_folder(o); }),
      HasSubstr("line 2: 'wolf' is neither a class folder of train/ nor a label in [0, 3)"));
}

TEST(ImageFolderShards, BadFilesAreNamedOrSkipped) {
  TempDir tmp;
  make_folder(tmp.path(), "train", 3);
  put(tmp.path() / "train/dog/broken.jpg",
      {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
  ImageFolderImport o = options(tmp.path(), tmp.path() / "out");
  const std::string error = error_of([&] { import_image_folder(o); });
  EXPECT_THAT(error, HasSubstr("train/dog/broken.jpg"));
  EXPECT_THAT(error, HasSubstr("--skip_bad"));
  o.skip_bad = true;
  const ImageFolderResult r = import_image_folder(o);
  EXPECT_EQ(r.skipped, 1);
  EXPECT_EQ(r.written, 9);
  ASSERT_EQ(r.skipped_files.size(), 1u);
  EXPECT_THAT(r.skipped_files[0], HasSubstr("broken.jpg"));
  EXPECT_EQ(stored(tmp.path() / "out", "train").size(), 9u);

  TempDir empty;
  fs::create_directories(empty.path() / "cat");
  EXPECT_THAT(error_of([&] { import_image_folder(options(empty.path(), empty.path() / "o")); }),
              HasSubstr("empty class folder (no .jpg, .jpeg or .png files)"));
  TempDir only_val;
  make_folder(only_val.path(), "val", 1);
  EXPECT_THAT(
      error_of([&] { import_image_folder(options(only_val.path(), only_val.path() / "o")); }),
      HasSubstr("no train/ folder"));
}

}  // namespace
}  // namespace vmoe
