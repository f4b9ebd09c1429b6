// The batch loader: data order, rank independence, resumption, augmentation,
// per-batch reads, padding and error handling.
#include <map>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/check.h"
#include "datasets/augment.h"
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


std::vector<Batch> take(Loader& loader, int n) {
  std::vector<Batch> batches(n);
  for (Batch& b : batches) EXPECT_TRUE(loader.next(b));
  return batches;
}

// Training example indices of the first `steps` batches, in stream order.
std::vector<int64_t> stream_indices(const LoaderOptions& options, int steps) {
  Loader loader(options);
  std::vector<int64_t> out;
  Batch batch;
  for (int s = 0; s < steps; ++s) {
    EXPECT_TRUE(loader.next(batch));
    EXPECT_EQ(batch.step, options.start_step + s);
    out.insert(out.end(), batch.index.begin(), batch.index.end());
  }
  return out;
}

// Expected scaled image of an example without augmentation.
std::vector<float> expected_image(int64_t example, const SyntheticOptions& o) {
  std::vector<float> out;
  for (int y = 0; y < o.height; ++y)
    for (int x = 0; x < o.width; ++x)
      for (int c = 0; c < o.channels; ++c)
        out.push_back(scale_pixel(testing::synthetic_pixel(example, y, x, c)));
  return out;
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = write_synthetic(dir_.file("train.h5"), data_); }
  LoaderOptions training(int64_t batch_size, uint64_t seed = 1) const {
    return {.path = path_, .batch_size = batch_size, .training = true, .seed = seed};
  }
  int64_t image_size() const { return int64_t{data_.height} * data_.width * data_.channels; }

  TempDir dir_;
  // 1000 is not a power of four, so the permutation has to cycle-walk.
  SyntheticOptions data_{.size = 1000, .height = 4, .width = 5, .channels = 3};
  std::string path_;
};

TEST_F(LoaderTest, EveryExampleOncePerEpoch) {
  for (int64_t batch_size : {100, 64}) {
    const std::vector<int64_t> stream = stream_indices(training(batch_size), 40);
    ASSERT_GE(stream.size(), 2000u);
    for (int epoch = 0; epoch < 2; ++epoch) {
      std::vector<int64_t> seen(stream.begin() + epoch * 1000, stream.begin() + (epoch + 1) * 1000);
      std::sort(seen.begin(), seen.end());
      for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(seen[i], i) << "epoch " << epoch;
    }
  }
  Loader loader(training(64));
  EXPECT_EQ(loader.num_batches(), 15);
}

TEST_F(LoaderTest, OrderDependsOnSeedAndEpochOnly) {
  const std::vector<int64_t> a = stream_indices(training(100, 1), 20);
  const std::vector<int64_t> again = stream_indices(training(100, 1), 20);
  const std::vector<int64_t> other_seed = stream_indices(training(100, 2), 20);
  EXPECT_EQ(a, again);
  EXPECT_NE(a, other_seed);
  EXPECT_FALSE(std::equal(a.begin(), a.begin() + 1000, a.begin() + 1000));
  // Not merely the identity either.
  int fixed_points = 0;
  for (int64_t i = 0; i < 1000; ++i) fixed_points += a[i] == i;
  EXPECT_LT(fixed_points, 20);
}

TEST_F(LoaderTest, LabelsAndPixelsMatchTheIndex) {
  Loader loader(training(50));
  Batch batch;
  for (int s = 0; s < 25; ++s) {
    ASSERT_TRUE(loader.next(batch));
    ASSERT_EQ(batch.rows, 50);
    ASSERT_EQ(batch.images.size(), 50u * image_size());
    EXPECT_TRUE(batch.multi_hot.empty());
    EXPECT_TRUE(batch.superclass.empty());
    for (int j = 0; j < batch.rows; ++j) {
      const int64_t e = batch.index[j];
      ASSERT_EQ(batch.mask[j], 1);
      ASSERT_EQ(batch.labels[j], testing::synthetic_label(e, 10));
      const std::vector<float> want = expected_image(e, data_);
      ASSERT_TRUE(std::equal(want.begin(), want.end(), batch.images.begin() + j * image_size()));
    }
  }
}

TEST_F(LoaderTest, RanksConcatenateToTheSingleRankBatch) {
  LoaderOptions one = training(96, 7);
  one.crop_padding = 2;
  one.flip = true;
  one.prefetch = 0;
  LoaderOptions r0 = one, r1 = one;
  r0.world = r1.world = 2;
  r1.rank = 1;
  r0.prefetch = 3;
  Loader whole(one), first(r0), second(r1);
  Batch w, a, b;
  for (int s = 0; s < 25; ++s) {  // crosses two epoch boundaries
    ASSERT_TRUE(whole.next(w) && first.next(a) && second.next(b));
    ASSERT_EQ(a.rows, 48);
    ASSERT_EQ(a.step, w.step);
    std::vector<int64_t> index = a.index;
    index.insert(index.end(), b.index.begin(), b.index.end());
    ASSERT_EQ(index, w.index) << "step " << s;
    std::vector<float> images = a.images;
    images.insert(images.end(), b.images.begin(), b.images.end());
    ASSERT_EQ(images, w.images) << "step " << s;
    std::vector<int32_t> labels = a.labels;
    labels.insert(labels.end(), b.labels.begin(), b.labels.end());
    ASSERT_EQ(labels, w.labels);
  }
}

TEST_F(LoaderTest, StartStepResumesTheSameStream) {
  LoaderOptions options = training(64, 3);
  options.crop_padding = 1;
  options.flip = true;
  Loader full(options);
  const std::vector<Batch> reference = take(full, 30);
  options.start_step = 17;
  Loader resumed(options);
  for (int s = 17; s < 30; ++s) {
    Batch batch;
    ASSERT_TRUE(resumed.next(batch));
    EXPECT_EQ(batch.step, s);
    EXPECT_EQ(batch.index, reference[s].index);
    EXPECT_EQ(batch.images, reference[s].images);
  }
}

TEST_F(LoaderTest, AugmentationIsAPureFunctionOfSeedAndPosition) {
  LoaderOptions options = training(100, 11);
  options.crop_padding = 2;
  options.flip = true;
  options.start_step = 3;
  Loader loader(options);
  Batch batch;
  ASSERT_TRUE(loader.next(batch));
  int flips = 0;
  std::set<int> offsets;
  std::vector<float> want(image_size());
  for (int j = 0; j < batch.rows; ++j) {
    const uint64_t position = 3 * 100 + j;
    const Augmentation a = draw_augmentation(11, position, 2, true);
    flips += a.flip;
    offsets.insert(a.offset_y);
    std::vector<uint8_t> source;
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 5; ++x)
        for (int c = 0; c < 3; ++c)
          source.push_back(testing::synthetic_pixel(batch.index[j], y, x, c));
    augment_image(source.data(), 4, 5, 3, 2, a, want.data());
    ASSERT_TRUE(std::equal(want.begin(), want.end(), batch.images.begin() + j * image_size()));
  }
  EXPECT_GT(flips, 25);
  EXPECT_LT(flips, 75);
  EXPECT_EQ(offsets, (std::set<int>{0, 1, 2, 3, 4}));
}

// Raw datasets as 8-bit pixels (a GPU run's batches): the same crops and
// flips, unscaled; scaled they are the float batch exactly, padding and eval
// padding rows included.
TEST_F(LoaderTest, Uint8BatchesScaleToTheFloatBatchExactly) {
  for (const bool train : {true, false}) {
    LoaderOptions floats = training(64, 5);
    floats.crop_padding = 2;
    floats.threads = 2;
    floats.training = train;
    LoaderOptions pixels = floats;
    pixels.uint8_images = true;
    Loader a(floats), b(pixels);
    Batch x, p;
    for (int step = 0; step < 4 && a.next(x); ++step) {
      ASSERT_TRUE(b.next(p));
      ASSERT_EQ(p.pixels.size(), x.images.size());
      EXPECT_EQ(p.mask, x.mask);
      for (size_t i = 0; i < p.pixels.size(); ++i) {
        if (x.mask[i / image_size()] == 0) continue;  // padding rows: masked out anyway
        ASSERT_EQ(scale_pixel(p.pixels[i]), x.images[i]) << (train ? "train " : "eval ") << i;
      }
    }
  }
}

TEST(Augment, CropsTheZeroPaddedImageAndFlips) {
  // 2x3 single-channel image.
  const uint8_t image[6] = {10, 20, 30, 40, 50, 60};
  const float pad = scale_pixel(0);
  std::vector<float> out(6);
  augment_image(image, 2, 3, 1, 1, {.offset_y = 0, .offset_x = 0, .flip = false}, out.data());
  EXPECT_EQ(out, (std::vector<float>{pad, pad, pad, pad, scale_pixel(10), scale_pixel(20)}));
  augment_image(image, 2, 3, 1, 1, {.offset_y = 1, .offset_x = 1, .flip = true}, out.data());
  EXPECT_EQ(out, (std::vector<float>{scale_pixel(30), scale_pixel(20), scale_pixel(10),
                                     scale_pixel(60), scale_pixel(50), scale_pixel(40)}));
  augment_image(image, 2, 3, 1, 1, {.offset_y = 2, .offset_x = 2, .flip = false}, out.data());
  EXPECT_EQ(out, (std::vector<float>{scale_pixel(50), scale_pixel(60), pad, pad, pad, pad}));
  EXPECT_EQ(scale_pixel(0), -1.0f);
  EXPECT_EQ(scale_pixel(255), 1.0f);
}

TEST_F(LoaderTest, ReadsOnlyTheRowsOfEachBatch) {
  LoaderOptions options = training(100);
  options.prefetch = 0;
  Loader loader(options);
  EXPECT_EQ(loader.bytes_read(), 0);
  Batch batch;
  for (int s = 1; s <= 10; ++s) {
    ASSERT_TRUE(loader.next(batch));
    EXPECT_EQ(loader.bytes_read(), s * 100 * image_size());
  }
  // With prefetching, a finished eval pass has read each example exactly once.
  Loader eval({.path = path_, .batch_size = 300, .training = false, .prefetch = 2});
  while (eval.next(batch)) {
  }
  EXPECT_EQ(eval.bytes_read(), 1000 * image_size());
}

TEST_F(LoaderTest, EvalPassPadsTheLastBatch) {
  for (int world : {1, 4}) {
    for (int rank = 0; rank < world; ++rank) {
      Loader loader({.path = path_,
                     .batch_size = 384,
                     .rank = rank,
                     .world = world,
                     .training = false,
                     .crop_padding = 4,
                     .flip = true});
      EXPECT_EQ(loader.num_batches(), 3);
      Batch batch;
      const int b = 384 / world;
      for (int s = 0; s < 3; ++s) {
        ASSERT_TRUE(loader.next(batch));
        EXPECT_EQ(batch.step, s);
        EXPECT_EQ(batch.rows, b);
        for (int j = 0; j < b; ++j) {
          const int64_t p = s * 384 + rank * b + j;
          if (p < 1000) {
            ASSERT_EQ(batch.index[j], p);
            ASSERT_EQ(batch.mask[j], 1);
            ASSERT_EQ(batch.labels[j], testing::synthetic_label(p, 10));
            const std::vector<float> want = expected_image(p, data_);  // no augmentation
            ASSERT_TRUE(
                std::equal(want.begin(), want.end(), batch.images.begin() + j * image_size()));
          } else {
            ASSERT_EQ(batch.index[j], -1);
            ASSERT_EQ(batch.mask[j], 0);
            ASSERT_EQ(batch.labels[j], 0);
            for (int64_t k = 0; k < image_size(); ++k)
              ASSERT_EQ(batch.images[j * image_size() + k], 0.0f);
          }
        }
      }
      EXPECT_FALSE(loader.next(batch));
      EXPECT_FALSE(loader.next(batch));
    }
  }
}

TEST_F(LoaderTest, BadOptions) {
  EXPECT_THAT(error_of([&] { Loader loader(training(1001)); }),
              AllOf(HasSubstr(path_), HasSubstr("batch_size 1001 is larger than the dataset"),
                    HasSubstr("1000 examples")));
  LoaderOptions options = training(100);
  options.world = 3;
  EXPECT_THAT(error_of([&] { Loader loader(options); }),
              HasSubstr("batch_size 100 is not divisible by world 3"));
  options.world = 2;
  options.rank = 2;
  EXPECT_THAT(error_of([&] { Loader loader(options); }),
              HasSubstr("rank 2 is not in [0, world = 2)"));
  EXPECT_THAT(error_of([&] { Loader loader(training(0)); }),
              HasSubstr("batch_size must be positive"));
  options = training(10);
  options.path = dir_.file("missing.h5");
  EXPECT_THAT(error_of([&] { Loader loader(options); }), HasSubstr("no such file"));
  // Eval may use a batch larger than the dataset: one padded batch.
  Loader eval({.path = path_, .batch_size = 2048, .training = false});
  EXPECT_EQ(eval.num_batches(), 1);
}

TEST_F(LoaderTest, StopsCleanlyWhenTheConsumerStopsEarly) {
  for (int prefetch : {1, 2, 8}) {
    LoaderOptions options = training(10);
    options.prefetch = prefetch;
    { Loader unused(options); }
    Loader loader(options);
    Batch batch;
    ASSERT_TRUE(loader.next(batch));
  }
}

TEST(LoaderExtras, MultiHotAndSuperclass) {
  TempDir dir;
  const std::string path =
      write_synthetic(dir.file("m.h5"),
                      {.size = 40, .num_classes = 7, .multi_label = true, .has_superclass = true});
  Loader loader({.path = path, .batch_size = 16, .training = false});
  EXPECT_TRUE(loader.info().multi_label);
  Batch batch;
  int64_t seen = 0;
  while (loader.next(batch)) {
    EXPECT_TRUE(batch.labels.empty());
    ASSERT_EQ(batch.multi_hot.size(), 16u * 7);
    ASSERT_EQ(batch.superclass.size(), 16u);
    for (int j = 0; j < batch.rows; ++j) {
      if (!batch.mask[j]) continue;
      const int64_t e = batch.index[j];
      const int32_t label = testing::synthetic_label(e, 7);
      for (int k = 0; k < 7; ++k) {
        EXPECT_EQ(batch.multi_hot[j * 7 + k], k == label || k == (label + 1) % 7 ? 1 : 0);
      }
      EXPECT_EQ(batch.superclass[j], testing::synthetic_superclass(e));
      ++seen;
    }
  }
  EXPECT_EQ(seen, 40);
}

}  // namespace
}  // namespace vmoe
