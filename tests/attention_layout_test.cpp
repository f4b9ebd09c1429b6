// The two attention layouts train alike (mpirun with 1, 2 and 4 ranks): the
// head-major layout with padded tokens (Backend::attention_pad_to, the GPU's
// default) against the strided views (the CPU's), on the CPU, over several
// steps of dense ViT, V-MoE and Mobile V-MoE, with and without remat, in fp32
// and bf16. The padding adds exact zeros to every product, so the parameters
// come out bit for bit the same.
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

class AttentionLayout : public ::testing::TestWithParam<Case> {
 protected:
  std::vector<float> train(int pad_to) {
    const Case c = GetParam();
    const int r = world().rank();
    const int64_t per_rank = 4;
    TrainerOptions options = testing::small_trainer_options(c, per_rank * world().size());
    ProcessGroups groups(world(), c.moe ? options.moe.num_experts : 0, 0);
    CpuBackend be;
    be.set_attention_pad_to(pad_to);
    Trainer trainer(be, options, &groups);
    const ImageShape& s = options.model.image;
    const int64_t pixels = int64_t{s.height} * s.width * s.channels;
    const testing::SmallBatch batch = testing::small_batch(r, per_rank, options.model.num_classes);
    for (int step = 0; step < 3; ++step) {
      const std::vector<float> images =
          testing::random_normal(per_rank * pixels, 70 + 10 * step + r);
      trainer.train_step(images.data(), batch.targets(), batch.superclass_for(c.routing));
    }
    const float* begin = trainer.params().values().data();
    return {begin, begin + trainer.params().size()};
  }
};

TEST_P(AttentionLayout, HeadMajorTrainsLikeStrided) {
  const std::vector<float> strided = train(0);
  for (const int pad_to : {1, 8}) {
    const std::vector<float> head_major = train(pad_to);
    EXPECT_TRUE(head_major == strided)
        << GetParam().name << ", tokens padded to a multiple of " << pad_to;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, AttentionLayout,
    ::testing::Values(Case{.name = "dense"}, Case{.name = "vmoe", .moe = true},
                      Case{.name = "vmoe_remat", .moe = true, .remat = true},
                      Case{.name = "mobile_vmoe", .moe = true, .routing = Routing::kImage},
                      Case{.name = "dense_bf16", .precision = Precision::kBf16},
                      Case{.name = "vmoe_bf16", .moe = true, .precision = Precision::kBf16}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace vmoe
