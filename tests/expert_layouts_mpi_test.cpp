// The expert buffers' two layouts with experts sharded over ranks (mpirun
// with 1, 2 and 4 ranks): the fixed layout a GPU computes whole (empty slots
// zero; under bf16 only the payloads' bf16 copies are written and sent) and
// the CPU's packed buffers (kept rows only; on one node exchanged in shared
// memory) train the same function, under fp32 and bf16.
#include <gtest/gtest.h>

#include <cmath>

#include "comm/process_groups.h"
#include "core/cpu/cpu_backend.h"
#include "launch/trainer.h"
#include "tests/mpi_test_util.h"
#include "tests/small_trainer.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::world;

class ExpertLayouts : public ::testing::TestWithParam<Precision> {};

TEST_P(ExpertLayouts, FixedAndPackedTrainTheSame) {
  const Precision precision = GetParam();
  const int n = world().size(), r = world().rank();
  const int64_t per_rank = 4;
  const TrainerOptions options =
      testing::small_trainer_options(true, Routing::kToken, precision, per_rank * n);
  ProcessGroups groups(world(), options.moe.num_experts, 0);
  CpuBackend be_fixed, be_packed;
  be_fixed.set_skip_empty_slots(false);
  Trainer fixed(be_fixed, options, &groups);
  Trainer packed(be_packed, options, &groups);
  testing::randomize_parameters(fixed.params(), 11, 0.3f);
  testing::randomize_parameters(packed.params(), 11, 0.3f);
  const ImageShape& s = options.model.image;
  const int64_t pixels = int64_t{s.height} * s.width * s.channels;
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < per_rank; ++i)
    labels.push_back(static_cast<int32_t>((r * per_rank + i) * 7 % options.model.num_classes));
  const LossTargets targets{per_rank, labels.data(), nullptr, nullptr};
  // Sums in other blocks, and under bf16 copies rounded from them.
  const double tol = precision == Precision::kBf16 ? 2e-3 : 1e-5;
  for (int step = 0; step < 4; ++step) {
    const std::vector<float> images =
        testing::random_normal(static_cast<size_t>(n * per_rank * pixels), 30 + step);
    const float* mine = images.data() + r * per_rank * pixels;
    fixed.train_step(mine, targets, nullptr);
    packed.train_step(mine, targets, nullptr);
    if (step % 2 == 1) {
      const TrainMetrics a = fixed.read_metrics(), b = packed.read_metrics();
      EXPECT_NEAR(a.loss, b.loss, tol * std::abs(b.loss)) << "step " << step;
      EXPECT_NEAR(a.grad_norm, b.grad_norm, tol * b.grad_norm) << "step " << step;
      EXPECT_GT(b.grad_norm, 0.0);
    }
  }
  const std::vector<float> pf = fixed.params().values().to_host();
  const std::vector<float> pp = packed.params().values().to_host();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < pf.size(); ++i) {
    diff += (pf[i] - pp[i]) * double{pf[i] - pp[i]};
    norm += pp[i] * double{pp[i]};
  }
  // Adam magnifies the gradients' last bits where they are near zero.
  EXPECT_LT(std::sqrt(diff / norm), precision == Precision::kBf16 ? 2e-3 : 5e-4)
      << "parameters after 4 steps";
}

INSTANTIATE_TEST_SUITE_P(Precisions, ExpertLayouts,
                         ::testing::Values(Precision::kFp32, Precision::kBf16),
                         [](const auto& info) {
                           return info.param == Precision::kBf16 ? "bf16" : "fp32";
                         });

}  // namespace
}  // namespace vmoe
