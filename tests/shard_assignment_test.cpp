// Under mpirun with 1, 2 and 4 ranks: the ranks' shares of a sharded,
// encoded training set cover every example exactly once per epoch, and the
// global stream (examples and their decoded, augmented pixels) is the one a
// single process reads.
#include <algorithm>
#include <numeric>

#include <gtest/gtest.h>

#include "datasets/loader.h"
#include "tests/dataset_files.h"
#include "tests/mpi_test_util.h"

namespace vmoe {
namespace {

using testing::world;

TEST(ShardAssignment, EveryExampleOncePerEpochOnAnyRankCount) {
  const testing::SharedDir dir;
  const SyntheticSpec synth{.num_classes = 5, .height = 12, .width = 10, .channels = 3,
                            .size_jitter = 0.25f, .seed = 9};
  const std::vector<int64_t> sizes = {7, 12, 5};  // 24 examples in uneven shards
  std::string glob = dir.path + "/train-*.h5";
  if (world().rank() == 0) testing::write_encoded_shards(dir.path, sizes, synth);
  world().barrier();

  constexpr int64_t kBatch = 8, kN = 24, kSteps = 9;  // 3 epochs
  const int ranks = world().size(), rank = world().rank();
  const int64_t b = kBatch / ranks;
  LoaderOptions options{.path = glob, .batch_size = kBatch, .rank = rank, .world = ranks,
                        .training = true, .seed = 11, .flip = true, .image_height = 8,
                        .image_width = 8, .threads = 2, .max_open_shards = 2};
  Loader mine(options);
  options.rank = 0;
  options.world = 1;
  Loader single(options);

  std::vector<int64_t> my_index, all_index(kSteps * kBatch);
  std::vector<float> my_images;
  Batch batch, whole;
  for (int64_t step = 0; step < kSteps; ++step) {
    ASSERT_TRUE(mine.next(batch));
    ASSERT_TRUE(single.next(whole));
    my_index.insert(my_index.end(), batch.index.begin(), batch.index.end());
    // This rank's rows are rows [rank*b, (rank+1)*b) of the single process's batch.
    const int64_t floats = static_cast<int64_t>(batch.images.size());
    EXPECT_TRUE(std::equal(batch.images.begin(), batch.images.end(),
                           whole.images.begin() + rank * floats))
        << "rank " << rank << " step " << step;
    EXPECT_TRUE(std::equal(batch.index.begin(), batch.index.end(), whole.index.begin() + rank * b));
  }
  // Gather every rank's indices in stream order: step-major, then rank.
  std::vector<int64_t> gathered(kSteps * kBatch);
  world().all_gather(my_index.data(), gathered.data(), kSteps * b * sizeof(int64_t));
  for (int r = 0; r < ranks; ++r) {
    for (int64_t step = 0; step < kSteps; ++step) {
      std::copy_n(gathered.begin() + (r * kSteps + step) * b, b,
                  all_index.begin() + step * kBatch + r * b);
    }
  }
  for (int64_t epoch = 0; epoch < kSteps * kBatch / kN; ++epoch) {
    std::vector<int64_t> seen(all_index.begin() + epoch * kN, all_index.begin() + (epoch + 1) * kN);
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> every(kN);
    std::iota(every.begin(), every.end(), 0);
    EXPECT_EQ(seen, every) << "epoch " << epoch << " on " << ranks << " ranks";
  }
}

}  // namespace
}  // namespace vmoe
