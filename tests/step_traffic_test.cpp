// A training step makes no host<->device copy and no host wait (mpirun with
// 1 and 2 ranks): the CPU backend counts them as a GPU's would
// (core/backend.h HostTraffic), so a read of device memory on the host slipped
// into the step fails here, not only on a GPU. The inputs are copied before
// the step; the metrics come back in one copy on the steps that log. Dense
// ViT, V-MoE (experts sharded over the ranks, fp32 and bf16, with remat) and
// Mobile V-MoE with the super-class loss.
#include <gtest/gtest.h>

#include <string>

#include "comm/process_groups.h"
#include "core/cpu/cpu_backend.h"
#include "launch/trainer.h"
#include "tests/mpi_test_util.h"
#include "tests/small_trainer.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::world;

using Model = testing::TrainCase;

class StepTraffic : public ::testing::TestWithParam<Model> {};

TEST_P(StepTraffic, NoHostCopyOrWaitInsideTheStep) {
  const Model model = GetParam();
  const int r = world().rank();
  const int64_t per_rank = 4;
  TrainerOptions options = testing::small_trainer_options(model, per_rank * world().size());
  ProcessGroups groups(world(), model.moe ? options.moe.num_experts : 0, 0);
  CpuBackend be;
  Trainer trainer(be, options, &groups);
  const ImageShape& s = options.model.image;
  const int64_t pixels = int64_t{s.height} * s.width * s.channels;
  const testing::SmallBatch batch = testing::small_batch(r, per_rank, options.model.num_classes);
  const LossTargets targets = batch.targets();
  const int32_t* sc = batch.superclass_for(model.routing);
  // Staged inputs: images, loss weights, labels (+ super-class labels).
  const int64_t inputs = sc != nullptr ? 4 : 3;
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> images = testing::random_normal(per_rank * pixels, 40 + step);
    const HostTraffic before = be.traffic();
    const StepResult result = trainer.train_step(images.data(), targets, sc);
    const HostTraffic call = {be.traffic().to_device - before.to_device,
                              be.traffic().to_host - before.to_host,
                              be.traffic().syncs - before.syncs};
    const std::string what = model.name + ", step " + std::to_string(step);
    EXPECT_EQ(result.traffic.to_device, 0) << what;
    EXPECT_EQ(result.traffic.to_host, 0) << what;
    EXPECT_EQ(result.traffic.syncs, 0) << what;
    EXPECT_EQ(call.to_device, inputs) << what << ": only the inputs go to the device";
    EXPECT_EQ(call.to_host + call.syncs, 0) << what;
  }
  // Logging: everything the steps measured comes back in one copy.
  const HostTraffic before = be.traffic();
  const TrainMetrics m = trainer.read_metrics();
  EXPECT_EQ(be.traffic().to_host - before.to_host, 1) << model.name;
  EXPECT_EQ(be.traffic().to_device - before.to_device, 0) << model.name;
  EXPECT_EQ(be.traffic().syncs - before.syncs, 0) << model.name;
  EXPECT_EQ(m.steps, 3);
  EXPECT_GT(m.loss, 0.0);
  EXPECT_GT(m.grad_norm, 0.0);
  EXPECT_EQ(m.aux_loss > 0.0, model.moe) << model.name;
  EXPECT_EQ(m.routing.empty(), !model.moe) << model.name;
}

INSTANTIATE_TEST_SUITE_P(
    Models, StepTraffic,
    ::testing::Values(Model{.name = "dense"}, Model{.name = "vmoe", .moe = true},
                      Model{.name = "vmoe_bf16", .moe = true, .precision = Precision::kBf16},
                      Model{.name = "vmoe_remat", .moe = true, .remat = true},
                      Model{.name = "mobile_vmoe", .moe = true, .routing = Routing::kImage}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace vmoe
