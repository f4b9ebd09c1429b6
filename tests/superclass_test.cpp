// Super-classes: clustering a confusion matrix, reading confusion.csv, and
// rewriting dataset files (validation split, /superclass) in blocks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "datasets/copy_examples.h"
#include "datasets/dataset_info.h"
#include "datasets/loader.h"
#include "datasets/superclass.h"
#include "tests/dataset_files.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

// 6 classes in three confused pairs {0,3}, {1,4}, {2,5}, with weak noise elsewhere.
ConfusionMatrix paired() {
  ConfusionMatrix m;
  m.class_names = {"a", "b", "c", "d", "e", "f"};
  m.counts.assign(36, 1);
  for (int i = 0; i < 6; ++i) m.counts[i * 6 + i] = 80;
  for (auto [i, j] : {std::pair{0, 3}, {1, 4}, {2, 5}}) {
    m.counts[i * 6 + j] = 15;
    m.counts[j * 6 + i] = 12;
  }
  return m;
}

TEST(Superclass, ClustersConfusedClassesTogether) {
  EXPECT_EQ(cluster_confusion(paired(), 3), (std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(cluster_confusion(paired(), 6), (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(cluster_confusion(paired(), 1), (std::vector<int32_t>(6, 0)));
  EXPECT_THAT(error_of([] { cluster_confusion(paired(), 7); }),
              HasSubstr("cannot make 7 super-classes out of 6 classes"));
}

TEST(Superclass, KeepsSuperclassesBalanced) {
  // Classes 0-3 are all confused with each other, 4 and 5 with nothing: an
  // unconstrained clustering into 3 would make {0,1,2,3}, {4}, {5}.
  ConfusionMatrix m;
  m.class_names = {"a", "b", "c", "d", "e", "f"};
  m.counts.assign(36, 0);
  for (int i = 0; i < 6; ++i) m.counts[i * 6 + i] = 50;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j)
      if (i != j) m.counts[i * 6 + j] = 10 + i + j;
  const std::vector<int32_t> group = cluster_confusion(m, 3);
  std::vector<int> size(3, 0);
  for (int32_t g : group) ++size[g];
  EXPECT_EQ(size, (std::vector<int>{2, 2, 2}));
  EXPECT_EQ(group[2], group[3]) << "the most confused pair (2, 3) stays together";
  // 5 classes into 2: ceil(5/2) = 3, so sizes 3 + 2.
  ConfusionMatrix five{{"a", "b", "c", "d", "e"}, std::vector<int64_t>(25, 1)};
  const std::vector<int32_t> two = cluster_confusion(five, 2);
  EXPECT_EQ(std::count(two.begin(), two.end(), 0) + std::count(two.begin(), two.end(), 1), 5);
  EXPECT_LE(std::max(std::count(two.begin(), two.end(), 0), std::count(two.begin(), two.end(), 1)),
            3);
}

TEST(Superclass, ReadsConfusionCsv) {
  testing::TempDir dir;
  const std::string path = dir.file("confusion.csv");
  std::ofstream(path) << "label\\prediction,\"x, y\",z\n\"x, y\",5,1\nz,0,7\n";
  const ConfusionMatrix m = read_confusion_csv(path);
  EXPECT_EQ(m.class_names, (std::vector<std::string>{"x, y", "z"}));
  EXPECT_EQ(m.counts, (std::vector<int64_t>{5, 1, 0, 7}));
  std::ofstream(path) << "h,a,b\na,1\n";
  EXPECT_THAT(error_of([&] { read_confusion_csv(path); }), HasSubstr("row 1 has 1 counts"));
  std::ofstream(path) << "h,a\na,-3\n";
  EXPECT_THAT(error_of([&] { read_confusion_csv(path); }), HasSubstr("'-3' is not a count"));
}

TEST(CopyExamples, SplitsOffTheTailExactly) {
  testing::TempDir dir;
  const std::string path = testing::write_synthetic(dir.file("train.h5"), {.size = 100});
  split_off_tail(path, 30, dir.file("val.h5"));
  EXPECT_EQ(inspect_dataset(path).size, 70);
  EXPECT_EQ(inspect_dataset(dir.file("val.h5")).size, 30);
  Loader loader({.path = dir.file("val.h5"), .batch_size = 30, .training = false});
  Batch b;
  ASSERT_TRUE(loader.next(b));
  for (int i = 0; i < 30; ++i) {
    EXPECT_EQ(b.labels[i], testing::synthetic_label(70 + i, 10)) << i;
    EXPECT_FLOAT_EQ(b.images[i * 60], testing::synthetic_pixel(70 + i, 0, 0, 0) / 127.5f - 1.0f);
  }
  EXPECT_THAT(error_of([&] { split_off_tail(path, 70, dir.file("x.h5")); }),
              HasSubstr("need 0 < count < 70"));
}

TEST(CopyExamples, WritesSuperclassesFromLabels) {
  testing::TempDir dir;
  const std::string path = testing::write_synthetic(dir.file("d.h5"), {.size = 50});
  const std::vector<int32_t> map = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4};
  EXPECT_EQ(copy_examples(path, path, {.class_to_superclass = &map}), 50);
  const DatasetInfo info = inspect_dataset(path);
  EXPECT_TRUE(info.has_superclass);
  Loader loader({.path = path, .batch_size = 50, .training = false});
  Batch b;
  ASSERT_TRUE(loader.next(b));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(b.superclass[i], map[b.labels[i]]);
  const std::vector<int32_t> short_map = {0, 1};
  EXPECT_THAT(error_of([&] { copy_examples(path, path, {.class_to_superclass = &short_map}); }),
              HasSubstr("the super-class map has 2 classes but"));
}

}  // namespace
}  // namespace vmoe
