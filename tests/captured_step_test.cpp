// A captured training step (TrainerOptions::capture_step: a CUDA graph on a
// GPU) trains exactly as the uncaptured one (mpirun with 1, 2 and 4 ranks),
// on the CPU's stand-in for a graph (CpuBackend::capture): the same
// parameters bit for bit, the same metrics and step count, through an
// evaluation with a larger batch between steps. It also checks what a GPU
// graph needs of the step: once two steps have run, the captured step takes no
// new memory from the system (a cudaMalloc would end the capture), and the
// host work between steps (staging the next batch, reading metrics) frees
// no memory the graph uses, so the steps after it are replays.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "comm/process_groups.h"
#include "core/cpu/cpu_backend.h"
#include "launch/trainer.h"
#include "tests/mpi_test_util.h"
#include "tests/small_trainer.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::world;

using Case = testing::TrainCase;

struct Outcome {
  std::vector<float> params;
  TrainMetrics metrics;
  EvalResult eval;
  int64_t steps = 0;
  int recaptures = 0;  // steps after the first capture that were not replays
};

constexpr int kSteps = 9, kEvalAfter = 3;

class CapturedStep : public ::testing::TestWithParam<Case> {
 protected:
  Outcome train(bool capture) {
    const Case c = GetParam();
    const int r = world().rank();
    const int64_t per_rank = 4;
    TrainerOptions options = testing::small_trainer_options(c, per_rank * world().size());
    options.capture_step = capture;
    ProcessGroups groups(world(), c.moe ? options.moe.num_experts : 0, 0);
    CpuBackend be;
    be.set_attention_pad_to(c.attention_pad_to);
    Trainer trainer(be, options, &groups);
    const ImageShape& s = options.model.image;
    const int64_t pixels = int64_t{s.height} * s.width * s.channels;
    const testing::SmallBatch batch = testing::small_batch(r, per_rank, options.model.num_classes);
    const int32_t* superclass = batch.superclass_for(c.routing);
    Outcome out;
    for (int step = 0; step < kSteps; ++step) {
      const std::vector<float> images =
          testing::random_normal(per_rank * pixels, 90 + 10 * step + r);
      trainer.stage(images.data(), batch.targets(), superclass);
      const std::string what = c.name + ", step " + std::to_string(step);
      const bool replay = be.capture_valid();
      const int64_t system_before = be.allocator().system_allocations();
      trainer.train_staged();
      if (capture && (step == 2 || step == kEvalAfter + 3)) {  // the captures
        EXPECT_TRUE(be.capture_valid()) << what << ": captured after two uncaptured steps";
        EXPECT_EQ(be.allocator().system_allocations(), system_before)
            << what << ": the captured step allocated new memory";
      }
      // Between steps, staging and metrics keep the graph's memory alive:
      // replays after each capture until the evaluation drops the graph.
      if (capture) {
        EXPECT_EQ(replay, step == 3 || step >= kEvalAfter + 4) << what;
      }
      if (capture && !replay && step > 2) ++out.recaptures;
      if (!capture) {
        EXPECT_FALSE(be.capture_valid()) << what;
      }
      if (step == kEvalAfter) {
        // A larger batch than training's: tensors grow.
        const int64_t eval_rows = 2 * per_rank;
        const testing::SmallBatch eb =
            testing::small_batch(r, eval_rows, options.model.num_classes);
        const std::vector<float> eval_images = testing::random_normal(eval_rows * pixels, 7 + r);
        out.eval = trainer.evaluate(eval_images.data(), eb.targets(), eb.superclass_for(c.routing));
        EXPECT_FALSE(be.capture_valid()) << what << ": the evaluation drops the graph";
      }
    }
    out.metrics = trainer.read_metrics();
    out.steps = trainer.step();
    const float* begin = trainer.params().values().data();
    out.params.assign(begin, begin + trainer.params().size());
    return out;
  }
};

TEST_P(CapturedStep, TrainsLikeTheUncapturedStep) {
  const Outcome eager = train(false);
  const Outcome captured = train(true);
  const std::string name = GetParam().name;
  EXPECT_TRUE(captured.params == eager.params) << name;
  EXPECT_EQ(captured.steps, kSteps) << name;
  EXPECT_EQ(eager.steps, kSteps) << name;
  EXPECT_EQ(captured.metrics.steps, eager.metrics.steps) << name;
  EXPECT_EQ(captured.metrics.loss, eager.metrics.loss) << name;
  EXPECT_EQ(captured.metrics.aux_loss, eager.metrics.aux_loss) << name;
  EXPECT_EQ(captured.metrics.grad_norm, eager.metrics.grad_norm) << name;
  EXPECT_EQ(captured.eval.loss_sum, eager.eval.loss_sum) << name;
  EXPECT_EQ(captured.eval.correct, eager.eval.correct) << name;
  EXPECT_EQ(captured.recaptures, 3) << name;  // two uncaptured steps and the capture
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CapturedStep,
    ::testing::Values(Case{.name = "dense"}, Case{.name = "vmoe", .moe = true},
                      Case{.name = "vmoe_remat", .moe = true, .remat = true},
                      Case{.name = "mobile_vmoe", .moe = true, .routing = Routing::kImage},
                      Case{.name = "vmoe_bf16", .moe = true, .precision = Precision::kBf16},
                      Case{.name = "vmoe_head_major", .moe = true, .attention_pad_to = 8},
                      Case{.name = "vmoe_bf16_head_major",
                           .moe = true,
                           .precision = Precision::kBf16,
                           .attention_pad_to = 8}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace vmoe
