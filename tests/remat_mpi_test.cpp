// Activation recomputation with experts sharded over ranks (mpirun with 1, 2
// and 4 ranks): training with --remat (the recompute re-does the dispatch and
// combine all-to-alls, every rank recomputing its blocks in the same order)
// gives the same losses, gradients and parameters, bit for bit, as without.
#include <gtest/gtest.h>

#include <cstring>

#include "comm/process_groups.h"
#include "core/cpu/cpu_backend.h"
#include "launch/trainer.h"
#include "tests/mpi_test_util.h"
#include "tests/small_trainer.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::world;

struct Layout {
  Routing routing;
  int ep_size;  // as --expert_parallel (0: the largest valid)
  Precision precision;
};

class RematSharded : public ::testing::TestWithParam<Layout> {};

TEST_P(RematSharded, SameTrainingBitForBit) {
  const Layout layout = GetParam();
  const int n = world().size(), r = world().rank();
  if (layout.ep_size > n || n % std::max(1, layout.ep_size) != 0) GTEST_SKIP();
  const int64_t per_rank = 4;
  TrainerOptions options =
      testing::small_trainer_options(true, layout.routing, layout.precision, per_rank * n);
  ProcessGroups groups(world(), options.moe.num_experts, layout.ep_size);
  CpuBackend be_plain, be_remat;
  Trainer plain(be_plain, options, &groups);
  options.model.remat = true;
  Trainer remat(be_remat, options, &groups);
  EXPECT_EQ(groups.placement().ep_size > 1, n > 1 && layout.ep_size != 1);
  // Random weights (no zero head), the same on both models and, for the
  // dense region, on every rank.
  testing::randomize_parameters(plain.params(), 11, 0.3f);
  testing::randomize_parameters(remat.params(), 11, 0.3f);
  const ImageShape& s = options.model.image;
  const int64_t pixels = int64_t{s.height} * s.width * s.channels;
  std::vector<int32_t> labels, superclass;
  for (int64_t i = 0; i < per_rank; ++i) {
    labels.push_back(static_cast<int32_t>((r * per_rank + i) * 7 % options.model.num_classes));
    superclass.push_back(static_cast<int32_t>((r * per_rank + i) * 5 % options.moe.num_experts));
  }
  const LossTargets targets{per_rank, labels.data(), nullptr, nullptr};
  const int32_t* sc = layout.routing == Routing::kImage ? superclass.data() : nullptr;
  for (int step = 0; step < 4; ++step) {
    // Each rank its own rows of the global batch.
    const std::vector<float> images = testing::random_normal(
        static_cast<size_t>(n * per_rank * pixels), 30 + step);
    const float* mine = images.data() + r * per_rank * pixels;
    plain.train_step(mine, targets, sc);
    remat.train_step(mine, targets, sc);
    const std::string what = "step " + std::to_string(step);
    if (step % 2 == 1) {  // metrics of two steps at a time
      const TrainMetrics a = plain.read_metrics(), b = remat.read_metrics();
      EXPECT_EQ(a.steps, 2) << what;
      EXPECT_EQ(a.loss, b.loss) << what;
      EXPECT_EQ(a.aux_loss, b.aux_loss) << what;
      EXPECT_EQ(a.grad_norm, b.grad_norm) << what;
      EXPECT_GT(a.grad_norm, 0.0) << what;
      ASSERT_EQ(a.routing.size(), b.routing.size());
      for (size_t i = 0; i < a.routing.size(); ++i)
        EXPECT_EQ(a.routing[i].value, b.routing[i].value) << what << " " << a.routing[i].name;
    }
    testing::expect_identical(plain.params().grads().to_host(), remat.params().grads().to_host(),
                     what + " gradients (after the all-reduce)");
    testing::expect_identical(plain.params().values().to_host(), remat.params().values().to_host(),
                     what + " parameters");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, RematSharded,
    ::testing::Values(Layout{Routing::kToken, 0, Precision::kFp32},
                      Layout{Routing::kToken, 2, Precision::kFp32},
                      Layout{Routing::kToken, 0, Precision::kBf16},
                      Layout{Routing::kImage, 0, Precision::kFp32}),
    [](const auto& info) {
      std::string name = info.param.routing == Routing::kToken ? "token" : "image";
      name += "_P" + std::to_string(info.param.ep_size);
      name += info.param.precision == Precision::kBf16 ? "_bf16" : "_fp32";
      return name;
    });

}  // namespace
}  // namespace vmoe
