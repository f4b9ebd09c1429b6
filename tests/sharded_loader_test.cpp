// Sharded, encoded datasets: shard discovery and schema checks, the loader's
// epoch order across shards, decoding, crops, mixup and determinism.
#include <algorithm>
#include <numeric>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/cpu/cpu_backend.h"
#include "datasets/augment.h"
#include "datasets/dataset_info.h"
#include "datasets/loader.h"
#include "tests/dataset_files.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;
using testing::write_encoded_shards;

constexpr int64_t kClasses = 7;

SyntheticSpec exact_spec() {  // no size jitter: decoded images are 12x10 exactly
  return {.num_classes = kClasses, .height = 12, .width = 10, .channels = 3, .size_jitter = 0,
          .seed = 5};
}

class ShardedLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { glob_ = write_encoded_shards(dir_.path(), sizes_, exact_spec()); }
  LoaderOptions training(int64_t batch, int world = 1, int rank = 0) const {
    return {.path = glob_, .batch_size = batch, .rank = rank, .world = world, .training = true,
            .seed = 3, .flip = true, .prefetch = 0};
  }
  TempDir dir_;
  std::vector<int64_t> sizes_ = {7, 13, 5};  // uneven on purpose: 25 examples
  std::string glob_;
};

TEST_F(ShardedLoaderTest, InspectsEveryShardAsOneDataset) {
  const DatasetInfo info = inspect_dataset(glob_);
  EXPECT_EQ(info.size, 25);
  EXPECT_TRUE(info.encoded);
  EXPECT_TRUE(info.multi_label && info.sparse_labels);
  EXPECT_EQ(info.shards.size(), 3u);
  EXPECT_EQ(info.shard_offsets, (std::vector<int64_t>{0, 7, 20, 25}));
  EXPECT_EQ(info.shard_of(0), 0);
  EXPECT_EQ(info.shard_of(6), 0);
  EXPECT_EQ(info.shard_of(7), 1);
  EXPECT_EQ(info.shard_of(24), 2);
  EXPECT_EQ(info.height, 12);
  EXPECT_EQ(info.width, 10);
  // A comma-separated list gives the same dataset, in the list's order.
  const DatasetInfo list = inspect_dataset(dir_.file("train-2.h5") + "," + dir_.file("train-0.h5"));
  EXPECT_EQ(list.size, 12);
  EXPECT_EQ(list.shards[0], dir_.file("train-2.h5"));
}

TEST_F(ShardedLoaderTest, RejectsMismatchedShardsAndEmptyGlobs) {
  EXPECT_THAT(error_of([&] { inspect_dataset(dir_.file("nothing-*.h5")); }),
              HasSubstr("no file matches"));
  SyntheticSpec other = exact_spec();
  other.height = 16;
  write_encoded_shards(dir_.path(), {3}, other, "odd");
  EXPECT_THAT(error_of([&] { inspect_dataset(glob_ + "," + dir_.file("odd-0.h5")); }),
              HasSubstr("does not match shard"));
}

TEST_F(ShardedLoaderTest, EvalDecodesEveryExampleWithItsLabels) {
  // crop fraction 1 at the stored size: the central crop is the whole image,
  // so pixels are exactly the synthetic ones.
  Loader loader({.path = glob_, .batch_size = 10, .training = false, .prefetch = 0,
                 .eval_crop_fraction = 1.0f});
  Batch batch;
  int64_t seen = 0;
  while (loader.next(batch)) {
    for (int j = 0; j < batch.rows; ++j) {
      if (!batch.mask[j]) continue;
      const int64_t i = batch.index[j];
      EXPECT_EQ(i, seen++);
      const std::vector<int32_t> labels = synthetic_labels(exact_spec(), i);
      const Image image = synthetic_image(exact_spec(), i, labels);
      for (int64_t c = 0; c < kClasses; ++c) {
        const bool want = std::count(labels.begin(), labels.end(), c) > 0;
        ASSERT_EQ(batch.multi_hot[j * kClasses + c], want ? 1 : 0) << "example " << i;
      }
      for (size_t p = 0; p < image.pixels.size(); ++p) {
        ASSERT_EQ(batch.images[j * image.pixels.size() + p], scale_pixel(image.pixels[p]))
            << "example " << i << " value " << p;
      }
    }
  }
  EXPECT_EQ(seen, 25);
}

TEST_F(ShardedLoaderTest, EveryEpochCoversEveryExampleOnceAndReshuffles) {
  Loader loader(training(5));
  std::vector<std::vector<int64_t>> epochs(3);
  Batch batch;
  for (auto& epoch : epochs) {
    for (int s = 0; s < 5; ++s) {
      ASSERT_TRUE(loader.next(batch));
      epoch.insert(epoch.end(), batch.index.begin(), batch.index.end());
    }
    std::vector<int64_t> sorted = epoch;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(25);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  // Examples from different shards share batches: the shuffle crosses shards.
  std::set<int> shards_in_first_batch;
  const DatasetInfo info = inspect_dataset(glob_);
  for (int j = 0; j < 5; ++j) shards_in_first_batch.insert(info.shard_of(epochs[0][j]));
  EXPECT_GT(shards_in_first_batch.size(), 1u);
}

TEST_F(ShardedLoaderTest, SameImagesForAnyRankCountThreadsAndOpenShards) {
  Batch whole;
  Loader one(training(10));
  one.next(whole);
  one.next(whole);  // step 1
  for (const int threads : {1, 3}) {
    for (const int open : {1, 16}) {
      std::vector<float> images;
      std::vector<int64_t> index;
      for (int rank = 0; rank < 2; ++rank) {
        LoaderOptions o = training(10, 2, rank);
        o.threads = threads;
        o.max_open_shards = open;
        o.start_step = 1;
        Loader loader(o);
        Batch part;
        ASSERT_TRUE(loader.next(part));
        images.insert(images.end(), part.images.begin(), part.images.end());
        index.insert(index.end(), part.index.begin(), part.index.end());
      }
      EXPECT_EQ(index, whole.index) << threads << " threads, " << open << " open shards";
      EXPECT_EQ(images, whole.images) << threads << " threads, " << open << " open shards";
    }
  }
}

TEST_F(ShardedLoaderTest, TrainingCropsAreRandomButSeeded) {
  LoaderOptions o = training(5);
  o.image_height = o.image_width = 8;  // resized from 12x10
  Loader a(o), b(o);
  Batch x, y;
  a.next(x);
  b.next(y);
  EXPECT_EQ(x.images, y.images);
  EXPECT_EQ(x.images.size(), 5u * 8 * 8 * 3);
  o.seed = 4;
  Loader c(o);
  c.next(y);
  EXPECT_NE(x.images, y.images);
}

TEST_F(ShardedLoaderTest, MixupMixesPairsAndTheirTargets) {
  LoaderOptions plain = training(6);
  LoaderOptions mixed = plain;
  mixed.mixup_alpha = 0.4f;
  Loader a(plain), b(mixed);
  Batch x, m;
  a.next(x);
  b.next(m);
  ASSERT_EQ(m.soft_targets.size(), 6u * kClasses);
  EXPECT_TRUE(x.soft_targets.empty());
  // Recover lambda from the targets of a pair whose labels differ.
  const int64_t n = static_cast<int64_t>(x.images.size()) / 6;
  for (int i = 0; i < 6; i += 2) {
    for (int64_t c = 0; c < kClasses; ++c) {
      const float ya = x.multi_hot[i * kClasses + c], yb = x.multi_hot[(i + 1) * kClasses + c];
      const float ta = m.soft_targets[i * kClasses + c], tb = m.soft_targets[(i + 1) * kClasses + c];
      EXPECT_NEAR(ta + tb, ya + yb, 1e-6);  // the pair's label mass is kept
      if (ya != yb) {
        const float lambda = ya > yb ? ta : 1 - ta;
        for (int64_t p = 0; p < n; p += 17) {
          EXPECT_NEAR(m.images[i * n + p],
                      lambda * x.images[i * n + p] + (1 - lambda) * x.images[(i + 1) * n + p],
                      1e-5);
        }
      }
    }
  }
  LoaderOptions odd = mixed;
  odd.batch_size = 5;
  EXPECT_THAT(error_of([&] { Loader bad(odd); }), HasSubstr("even number of rows"));
}

// A GPU run's batches: 8-bit pixels, resized and cropped as the floats are
// but rounded instead of scaled (so each is within half a level of the float
// image), in memory of the backend's choosing; mixup is left to the device,
// which gets the batch's lambda and the mixed targets.
TEST_F(ShardedLoaderTest, Uint8BatchesAreTheFloatImagesRounded) {
  CpuBackend be;
  for (const bool mix : {false, true}) {
    LoaderOptions floats = training(6);
    floats.threads = 2;
    floats.prefetch = 2;  // the two-thread pipeline
    if (mix) floats.mixup_alpha = 0.4f;
    LoaderOptions pixels = floats;
    pixels.uint8_images = true;
    pixels.pixel_memory = &be;
    Loader a(floats), b(pixels);
    for (int step = 0; step < 3; ++step) {
      Batch x, p;
      ASSERT_TRUE(a.next(x));
      ASSERT_TRUE(b.next(p));
      ASSERT_TRUE(x.pixels.empty());
      ASSERT_EQ(p.pixels.size(), x.images.size());
      EXPECT_TRUE(p.images.empty());
      EXPECT_EQ(p.pixels.get_allocator().backend, &be);
      EXPECT_EQ(p.index, x.index);
      EXPECT_EQ(p.soft_targets, x.soft_targets);
      EXPECT_EQ(p.mixup_lambda >= 0, mix);
      // The device's part: scale, then mix pairs with the batch's lambda.
      std::vector<float> scaled(p.pixels.size());
      for (size_t i = 0; i < scaled.size(); ++i) scaled[i] = scale_pixel(p.pixels[i]);
      if (mix) be.mix_pairs(3, static_cast<int64_t>(scaled.size()) / 6, p.mixup_lambda, scaled.data());
      for (size_t i = 0; i < scaled.size(); ++i)
        ASSERT_NEAR(scaled[i], x.images[i], 0.5 / 127.5 + 1e-6) << "step " << step << " " << i;
    }
  }
}

TEST_F(ShardedLoaderTest, CorruptImagesNameTheirShard) {
  // A shard whose one image is a truncated PNG: the error names it.
  DatasetSpec spec{.height = 12, .width = 10, .channels = 3, .encoded = true,
                   .num_classes = kClasses, .multi_label = true, .sparse_labels = true,
                   .class_names = {}};
  for (int64_t c = 0; c < kClasses; ++c) spec.class_names.push_back(std::to_string(c));
  DatasetWriter writer(dir_.file("bad-0.h5"), spec);
  const std::vector<uint8_t> garbage = {0x89, 'P', 'N', 'G', 1, 2, 3};
  const int64_t image_offsets[] = {0, 7}, label_offsets[] = {0, 1};
  const int32_t ids[] = {2};
  writer.append({.count = 1, .images = garbage.data(), .image_offsets = image_offsets,
                 .label_ids = ids, .label_offsets = label_offsets});
  writer.finish();
  Loader loader({.path = dir_.file("bad-0.h5"), .batch_size = 1, .training = false,
                 .prefetch = 0});
  Batch batch;
  EXPECT_THAT(error_of([&] { loader.next(batch); }),
              HasSubstr("example 0 of " + dir_.file("bad-0.h5")));
}

}  // namespace
}  // namespace vmoe
