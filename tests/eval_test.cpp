// Evaluation under mpirun (1, 2, 4 ranks): pre-logit features (few-shot's
// input) and the routing analysis are the same as one process computes.
#include <gtest/gtest.h>

#include <cmath>

#include "comm/mpi_communicator.h"
#include "core/cpu/cpu_backend.h"
#include "launch/eval_config.h"
#include "launch/evaluation.h"
#include "launch/features.h"
#include "launch/routing_analysis.h"
#include "launch/trainer.h"
#include "tests/dataset_files.h"
#include "tests/mpi_test_util.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

// Datasets are reported under a name made from their path: folder and stem,
// a glob's pattern characters and the separators they leave dropped.
TEST(DatasetName, FromPathsListsAndGlobs) {
  EXPECT_EQ(dataset_name("data/fmnist/test.h5"), "fmnist_test");
  EXPECT_EQ(dataset_name("test.h5"), "test");
  EXPECT_EQ(dataset_name("data/synth/test-*.h5"), "synth_test");
  EXPECT_EQ(dataset_name("data/synth/val_[0-9]*.h5"), "synth_val_0-9");
  EXPECT_EQ(dataset_name("a/b/x-00000.h5,a/b/x-00001.h5"), "b_x-00000");
}

using testing::world;

// A dataset every rank reads (rank 0 writes it), removed at the end.
struct SharedDataset {
  testing::SharedDir dir{"vmoe_eval"};
  std::string path = dir.path + "/data.h5";
  explicit SharedDataset(int64_t size) {
    if (world().rank() == 0) {
      testing::write_synthetic(path, {.size = size, .height = 8, .width = 8, .channels = 2,
                                      .num_classes = 3});
    }
    world().barrier();
  }
};

TrainerOptions tiny_vmoe(Routing routing) {
  TrainerOptions o;
  o.model = testing::tiny_vit();
  o.moe.layers = {1};
  o.moe.num_experts = 4;
  o.moe.num_selected = 2;
  o.moe.group_size = 2;
  o.moe.routing = routing;
  o.moe.eval_capacity_ratio = 0.5;  // some choices dropped, so BPR order matters
  o.moe.eval_num_selected = 2;
  o.global_batch = 8;
  o.seed = 5;
  return o;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5f * (1 + std::abs(b[i]))) << i;
}

class EvalAcrossRanks : public ::testing::TestWithParam<Routing> {};

TEST_P(EvalAcrossRanks, FeaturesAndRoutingMatchOneProcess) {
  const SharedDataset data(37);  // not a multiple of the batch: padding rows
  const TrainerOptions options = tiny_vmoe(GetParam());
  ProcessGroups groups(world(), options.moe.num_experts, 0);
  CpuBackend be, be_single;
  Trainer sharded(be, options, &groups);
  Trainer single(be_single, options);
  const EvalSource source{data.path, 8, 1};

  const FeatureSet a = extract_features(sharded, source), b = extract_features(single, source);
  ASSERT_EQ(a.rows(), 37);
  EXPECT_EQ(a.labels, b.labels);
  for (int64_t i = 0; i < a.rows(); ++i) EXPECT_EQ(a.labels[i], testing::synthetic_label(i, 3));
  expect_close(a.values, b.values);

  // A row list (out of order, with a repeat) gives those rows' features.
  const std::vector<int64_t> rows = {30, 2, 2, 17, 5};
  const FeatureSet some = extract_features(sharded, source, rows);
  ASSERT_EQ(some.rows(), 5);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(some.labels[i], b.labels[rows[i]]);
    // Another batch composition routes differently: compare with the
    // one-process features of the same list instead.
  }
  expect_close(some.values, extract_features(single, source, rows).values);

  RoutingAnalysis ra(sharded.model(), options.moe.group_size, 3);
  RoutingAnalysis rb(single.model(), options.moe.group_size, 3);
  const EvalResult ea = evaluate_dataset(sharded, source, &ra);
  const EvalResult eb = evaluate_dataset(single, source, &rb);
  EXPECT_EQ(ea.count, 37);
  EXPECT_EQ(ea.correct, eb.correct);
  EXPECT_EQ(ea.dropped, eb.dropped);
  ASSERT_EQ(ra.num_routers(), 1u);
  EXPECT_EQ(ra.router_name(0), GetParam() == Routing::kToken ? "block_1" : "image_router");
  EXPECT_EQ(ra.counts(0), rb.counts(0));
  // Every choice of every real image is counted once: k per token (or image).
  int64_t total = 0;
  for (int64_t v : ra.counts(0)) total += v;
  const int64_t per_image = GetParam() == Routing::kToken ? options.model.tokens() : 1;
  EXPECT_EQ(total, 37 * per_image * options.moe.eval_num_selected);
  EXPECT_EQ(ea.choices, total);
}

INSTANTIATE_TEST_SUITE_P(Routings, EvalAcrossRanks,
                         ::testing::Values(Routing::kToken, Routing::kImage),
                         [](const auto& info) {
                           return std::string(info.param == Routing::kToken ? "Token" : "Image");
                         });

}  // namespace
}  // namespace vmoe
