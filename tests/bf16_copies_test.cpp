// Mixed precision without repeated conversions (mpirun with 1, 2 and 4 ranks):
// GEMMs read weights from the parameter store's bf16 copy, which the
// optimiser refreshes in its update pass, and activations from the copies
// written by the ops that produce them (core/backend.h GemmInput). Asserted
// on the CPU, which counts conversions as a GPU does:
//  * the same bits as converting every GEMM input at every use (the copies
//    are never stale), over several steps of dense ViT, V-MoE and Mobile
//    V-MoE, with and without remat;
//  * in a step no weight is converted, and each activation at most once (the
//    number of conversions per step is pinned).
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

struct Model {
  std::string name;
  bool moe = false;
  Routing routing = Routing::kToken;
  bool remat = false;
  Pooling pooling = Pooling::kToken;
  int pre_logits = 0;
  int attention_pad_to = 0;  // head-major attention (the GPU's layout)
  // Conversions in one step on each rank (ConversionsPerStepArePinned).
  int64_t per_step_1_rank = 0, per_step_more_ranks = 0;
};

class Bf16Copies : public ::testing::TestWithParam<Model> {
 protected:
  struct Run {
    std::vector<float> params;
    std::vector<std::vector<const float*>> converted;  // per step
    std::vector<Bf16Conversions> counts;               // per step
    size_t bytes_in_use = 0;                           // after the last step
  };

  Run train(bool use_copies, int steps) {
    const Model model = GetParam();
    const int r = world().rank();
    const int64_t per_rank = 4;
    TrainerOptions options = testing::small_trainer_options(
        model.moe, model.routing, Precision::kBf16, per_rank * world().size());
    options.model.remat = model.remat;
    options.model.classifier = model.pooling;
    options.model.pre_logits_size = model.pre_logits;
    ProcessGroups groups(world(), model.moe ? options.moe.num_experts : 0, 0);
    CpuBackend be;
    be.set_use_bf16_copies(use_copies);
    be.set_attention_pad_to(model.attention_pad_to);
    Trainer trainer(be, options, &groups);
    const ImageShape& s = options.model.image;
    const int64_t pixels = int64_t{s.height} * s.width * s.channels;
    const testing::SmallBatch batch = testing::small_batch(r, per_rank, options.model.num_classes);
    const LossTargets targets = batch.targets();
    const int32_t* sc = batch.superclass_for(model.routing);
    Run run;
    for (int step = 0; step < steps; ++step) {
      const std::vector<float> images =
          testing::random_normal(per_rank * pixels, 60 + 10 * step + r);
      std::vector<const float*> log;
      const Bf16Conversions before = be.bf16_conversions();
      be.log_bf16_conversions(&log);
      trainer.train_step(images.data(), targets, sc);
      be.log_bf16_conversions(nullptr);
      const Bf16Conversions after = be.bf16_conversions();
      run.converted.push_back(log);
      run.counts.push_back(
          {after.gemm_inputs - before.gemm_inputs, after.explicit_calls - before.explicit_calls});
    }
    run.bytes_in_use = be.allocator().bytes_in_use();
    ParamStore& store = trainer.params();
    const float* begin = store.values().data();
    run.params.assign(begin, begin + store.size());
    // Weights are never converted inside a step: the optimiser refreshes them.
    for (const auto& step : run.converted) {
      for (const float* p : step) {
        EXPECT_FALSE(use_copies && p >= begin && p < begin + store.size())
            << model.name << ": a weight was converted in a step (offset " << (p - begin) << ")";
      }
    }
    return run;
  }
};

TEST_P(Bf16Copies, SameBitsAsConvertingEveryInputAtEveryUse) {
  const Run with = train(true, 4);
  const Run without = train(false, 4);
  EXPECT_TRUE(with.params == without.params)
      << GetParam().name << ": the copies changed the training (a stale or misplaced copy)";
  // The reference converts inside every GEMM; with copies only the patch
  // embedding's output gradient is left there (its one GEMM reads it once).
  for (size_t s = 0; s < with.counts.size(); ++s) {
    EXPECT_EQ(with.counts[s].gemm_inputs, 1) << GetParam().name << ", step " << s;
    EXPECT_GT(without.counts[s].gemm_inputs, 3 * with.counts[s].total()) << GetParam().name;
  }
  // With copies the GELU outputs (dense and expert MLPs) are kept as bf16
  // alone: only GEMMs read them.
  EXPECT_LT(with.bytes_in_use, without.bytes_in_use) << GetParam().name;
}

// Buffers are reused (every block's gradient passes through the same
// residual buffer), so the conversions are pinned by count. Per step, with 4
// blocks (MoE in blocks 1 and 3) and token pooling:
//  * each attention: its context in forward (again in remat's recompute), and
//    in backward the context's gradient and q|k|v's: 1 + 2 (the gradient
//    entering out comes with its copy: LN2's backward writes it);
//  * each dense MLP: none, its incoming gradient's copy written by the
//    backward of the norm above (LN1 of the block above, or the final norm
//    under gap pooling), except under the top block with token pooling and
//    right under Mobile V-MoE's image router, which adds to the gradient
//    after that norm: 1;
//  * each MoE layer on 1 rank: none (the dispatch writes the copy of the
//    experts' input, the combine's backward that of their output gradient;
//    until 2026-11-27 both were converted: 2, 3 with the recompute); on 2 or
//    4 ranks the same two ops write the bf16 payloads they send, leaving the
//    2 sent back from the experts' side (the experts' output and input
//    gradient: 1 more in the recompute; until 2026-11-27 all 4 sends, 6),
//    the experts reading the bf16 values they received;
//  * head-major attention instead: none (the packing and unpacking write the
//    copies of the context, its gradient and q|k|v's gradient);
//  * once: the patches, the head's input gradient and the patch projection's
//    gradient (read by one GEMM, converted there); gap pooling and a
//    pre-logits layer add the pooled features, the tanh output and its
//    gradient.
TEST_P(Bf16Copies, ConversionsPerStepArePinned) {
  const Model model = GetParam();
  const Run run = train(true, 2);
  const int64_t want = world().size() == 1 ? model.per_step_1_rank : model.per_step_more_ranks;
  for (size_t s = 0; s < run.counts.size(); ++s)
    EXPECT_EQ(run.counts[s].total(), want) << model.name << ", step " << s;
}

INSTANTIATE_TEST_SUITE_P(
    Models, Bf16Copies,
    ::testing::Values(
        Model{.name = "dense", .per_step_1_rank = 16, .per_step_more_ranks = 16},
        Model{.name = "dense_gap_pre_logits",
              .pooling = Pooling::kGap,
              .pre_logits = 6,
              .per_step_1_rank = 18,
              .per_step_more_ranks = 18},
        Model{
            .name = "dense_remat", .remat = true, .per_step_1_rank = 20, .per_step_more_ranks = 20},
        Model{.name = "vmoe", .moe = true, .per_step_1_rank = 15, .per_step_more_ranks = 19},
        Model{.name = "vmoe_remat",
              .moe = true,
              .remat = true,
              .per_step_1_rank = 19,
              .per_step_more_ranks = 25},
        Model{.name = "dense_head_major",
              .attention_pad_to = 8,
              .per_step_1_rank = 4,
              .per_step_more_ranks = 4},
        Model{.name = "vmoe_remat_head_major",
              .moe = true,
              .remat = true,
              .attention_pad_to = 8,
              .per_step_1_rank = 3,
              .per_step_more_ranks = 9},
        Model{.name = "mobile_vmoe",
              .moe = true,
              .routing = Routing::kImage,
              .per_step_1_rank = 16,
              .per_step_more_ranks = 20}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace vmoe
