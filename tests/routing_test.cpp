// Routing semantics: top-k, slot assignment (the reference test vector, for
// vanilla and batch-priority routing), capacity, masks, dispatch/combine, and
// the auxiliary losses against hand computations.
#include <gtest/gtest.h>

#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/vit_config.h"
#include "parallel/moe_config.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::error_of;

// google-research/vmoe, vmoe/moe_test.py (test_top_experts_per_item_expert_indices):
// gates [[.4,0,.2],[.5,.1,.4],[.3,.2,.6]], k=2, C=2.
struct TestVector {
  CpuBackend be;
  std::vector<float> gates = {.4f, 0.f, .2f, .5f, .1f, .4f, .3f, .2f, .6f};
  std::vector<int32_t> expert = std::vector<int32_t>(6);
  std::vector<float> top = std::vector<float>(6);
  std::vector<int32_t> slot = std::vector<int32_t>(6);
  void route(bool bpr) {
    be.top_k(3, 3, 2, gates.data(), expert.data(), top.data());
    be.assign_slots(1, 3, 2, 3, 2, bpr, expert.data(), top.data(), nullptr, 1, slot.data());
  }
  // (expert, slot) pairs with a dropped choice shown as slot 2 (== C), as in the reference.
  std::vector<std::pair<int, int>> pairs() const {
    std::vector<std::pair<int, int>> out;
    for (int i = 0; i < 6; ++i) out.emplace_back(expert[i], slot[i] < 0 ? 2 : slot[i]);
    return out;
  }
};

TEST(Routing, ReferenceVectorVanilla) {
  TestVector t;
  t.route(false);
  const std::vector<std::pair<int, int>> want = {{0, 0}, {2, 1}, {0, 1}, {2, 2}, {2, 0}, {0, 2}};
  EXPECT_EQ(t.pairs(), want);
  EXPECT_FLOAT_EQ(t.top[0], .4f);  // combine weights are the gates, not renormalised
  EXPECT_FLOAT_EQ(t.top[1], .2f);
}

TEST(Routing, ReferenceVectorBatchPriority) {
  TestVector t;
  t.route(true);
  const std::vector<std::pair<int, int>> want = {{0, 1}, {2, 2}, {0, 0}, {2, 1}, {2, 0}, {0, 2}};
  EXPECT_EQ(t.pairs(), want);
}

TEST(Routing, TopKBreaksTiesByLowerIndex) {
  CpuBackend be;
  const std::vector<float> x = {1, 3, 3, 2};
  int32_t idx[3];
  float val[3];
  be.top_k(1, 4, 3, x.data(), idx, val);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 2);
  EXPECT_EQ(idx[2], 3);
  EXPECT_EQ(val[2], 2.0f);
}

TEST(Routing, MaskedItemsTakeNoSlot) {
  CpuBackend be;
  // 4 items all choosing expert 0, capacity 2; item 0 is masked (padding).
  const std::vector<int32_t> expert = {0, 0, 0, 0};
  const std::vector<float> gate = {.9f, .8f, .7f, .6f}, mask = {0, 1, 1, 1};
  std::vector<int32_t> slot(4);
  be.assign_slots(1, 4, 1, 2, 2, true, expert.data(), gate.data(), mask.data(), 1, slot.data());
  EXPECT_EQ(slot, (std::vector<int32_t>{-1, 0, 1, -1}));
  std::vector<int64_t> counts(3, 0);
  be.count_assignments(4, 1, 2, expert.data(), slot.data(), mask.data(), 1, counts.data());
  EXPECT_EQ(counts, (std::vector<int64_t>{3, 0, 1}));
  // A per-image mask over 2 tokens per image: image 0 (items 0, 1) is padding.
  const std::vector<float> image_mask = {0, 1};
  be.assign_slots(1, 4, 1, 2, 2, false, expert.data(), gate.data(), image_mask.data(), 2,
                  slot.data());
  EXPECT_EQ(slot, (std::vector<int32_t>{-1, -1, 0, 1}));
}

TEST(Routing, GroupsAreIndependent) {
  CpuBackend be;
  const std::vector<int32_t> expert = {1, 1, 1, 1, 1, 1};
  const std::vector<float> gate(6, .5f);
  std::vector<int32_t> slot(6);
  be.assign_slots(2, 3, 1, 2, 4, false, expert.data(), gate.data(), nullptr, 1, slot.data());
  EXPECT_EQ(slot, (std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
}

TEST(Capacity, RoundsUpToAMultipleOfFour) {
  EXPECT_EQ(expert_capacity(2, 50, 1.05, 8), 16);  // ceil(13.125) = 14 -> 16
  EXPECT_EQ(expert_capacity(1, 3, 1.0, 3), 4);     // 1 -> 4
  EXPECT_EQ(expert_capacity(1, 16, 1.0, 4), 4);    // already a multiple
  EXPECT_EQ(expert_capacity(4, 10, 1.0, 4), 12);   // k = E: every item everywhere, 10 -> 12
  EXPECT_EQ(expert_capacity(1, 400, 0.25, 8), 16); // ceil(12.5) = 13 -> 16
  EXPECT_NE(error_of([] { expert_capacity(1, 8, 0.0, 4); }).find("below 1"), std::string::npos);
}

TEST(Placement, EveryLastAndLists) {
  EXPECT_EQ(parse_moe_layers("every:2", 6), (std::vector<int>{1, 3, 5}));
  EXPECT_EQ(parse_moe_layers("every:3", 8), (std::vector<int>{2, 5}));
  EXPECT_EQ(parse_moe_layers("every:1", 3), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(parse_moe_layers("last:2", 6), (std::vector<int>{3, 5}));
  EXPECT_EQ(parse_moe_layers("last:5", 24), (std::vector<int>{15, 17, 19, 21, 23}));
  EXPECT_EQ(parse_moe_layers("0,4", 6), (std::vector<int>{0, 4}));
  EXPECT_TRUE(parse_moe_layers("", 6).empty());
  EXPECT_NE(error_of([] { parse_moe_layers("last:4", 6); }).find("N must be in [1, 3]"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_moe_layers("3,1", 6); }).find("strictly increasing"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_moe_layers("1,9", 6); }).find("block 9 is outside [0, 6)"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_moe_layers("every:x", 6); }).find("expected every:N"),
            std::string::npos);
}

TEST(MoeConfig, ValidationNamesTheFlag) {
  ViTConfig vit;
  vit.image = {28, 28, 1};
  vit.patch_size = 7;
  MoeConfig m;
  m.layers = {1, 3, 5};
  EXPECT_EQ(error_of([&] { validate(m, vit, 128); }), "");
  EXPECT_NE(error_of([&] { validate(m, vit, 12); }).find("multiple of --group_size=8"),
            std::string::npos);
  m.num_selected = 9;
  EXPECT_NE(error_of([&] { validate(m, vit, 128); }).find("--num_selected=9 must be in [1, "),
            std::string::npos);
  m.num_selected = 2;
  m.eval_capacity_ratio = -1;
  EXPECT_NE(error_of([&] { validate(m, vit, 128); }).find("--eval_capacity_ratio must be positive"),
            std::string::npos);
}

TEST(Dispatch, BufferRowsFixedLayout) {
  CpuBackend be;
  // 2 groups of 2 items, k = 1, E = 2, capacity 2: group 0 sends both items to
  // expert 1, group 1 one item to each expert.
  const std::vector<int32_t> expert = {1, 1, 0, 1}, slot = {0, 1, 0, 0};
  std::vector<int32_t> row(4);
  be.moe_buffer_rows(2, 2, 1, 2, 2, 1, expert.data(), slot.data(), row.data());
  EXPECT_EQ(row, (std::vector<int32_t>{4, 5, 2, 6}));  // ((e * G + g) * C + slot)
  // Whole images (2 rows each) scale the rows; a dropped choice has row -1.
  const std::vector<int32_t> dropped = {0, -1, 0, 0};
  be.moe_buffer_rows(2, 2, 1, 2, 2, 2, expert.data(), dropped.data(), row.data());
  EXPECT_EQ(row, (std::vector<int32_t>{8, -1, 4, 12}));
}

TEST(Dispatch, PackedBufferRowsFillEachExpertFirst) {
  CpuBackend be;
  ASSERT_TRUE(be.skips_empty_slots());
  // The case above, packed: expert 1 takes group 0's two items, then group
  // 1's, at the front of its chunk of G * C = 4 rows; live counts its rows.
  const std::vector<int32_t> expert = {1, 1, 0, 1}, slot = {0, 1, 0, 0};
  std::vector<int32_t> row(4), live(2);
  be.moe_packed_buffer_rows(2, 2, 1, 2, 1, 2, 1, expert.data(), slot.data(), row.data(),
                            live.data());
  EXPECT_EQ(row, (std::vector<int32_t>{4, 5, 0, 6}));
  EXPECT_EQ(live, (std::vector<int32_t>{1, 3}));
  // Whole images (2 rows each); a dropped choice leaves no gap.
  const std::vector<int32_t> dropped = {0, -1, 0, 0};
  be.moe_packed_buffer_rows(2, 2, 1, 2, 1, 2, 2, expert.data(), dropped.data(), row.data(),
                            live.data());
  EXPECT_EQ(row, (std::vector<int32_t>{8, -1, 0, 10}));
  EXPECT_EQ(live, (std::vector<int32_t>{2, 4}));
  // In 2 parts of one group each (what 2 replicas of each expert receive):
  // each part packed on its own, live per (expert, part).
  live.resize(4);
  be.moe_packed_buffer_rows(2, 2, 1, 2, 2, 2, 1, expert.data(), slot.data(), row.data(),
                            live.data());
  EXPECT_EQ(row, (std::vector<int32_t>{4, 5, 2, 6}));  // the fixed layout's: no gaps here
  EXPECT_EQ(live, (std::vector<int32_t>{0, 1, 2, 1}));
}

TEST(Dispatch, TransposeBlocks) {
  CpuBackend be;
  // [outer 2, inner 3, block 2] -> [3, 2, 2]
  const std::vector<float> src = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
  std::vector<float> dst(12);
  be.transpose_blocks(2, 3, 2, src.data(), dst.data());
  EXPECT_EQ(dst, (std::vector<float>{0, 1, 10, 11, 2, 3, 12, 13, 4, 5, 14, 15}));
  // bf16 payloads (the expert exchange under bf16) move the same way.
  const std::vector<uint16_t> src16 = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
  std::vector<uint16_t> dst16(12);
  be.transpose_blocks(2, 3, 2, src16.data(), dst16.data());
  EXPECT_EQ(dst16, (std::vector<uint16_t>{0, 1, 10, 11, 2, 3, 12, 13, 4, 5, 14, 15}));
}

TEST(Dispatch, RoundTripAndDrops) {
  CpuBackend be;
  // 3 items of 2 rows (images), dim 2, k = 1; item 2 is dropped.
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const std::vector<int32_t> row = {2, 0, -1};
  const std::vector<float> gate = {.5f, .25f, .75f};
  std::vector<float> buf(4 * 2, -1.0f);
  be.moe_dispatch(3, 1, 2, 2, x.data(), row.data(), buf.data(), nullptr);
  EXPECT_EQ(buf, (std::vector<float>{5, 6, 7, 8, 1, 2, 3, 4}));
  // With a bf16 copy asked for: the written rows rounded into it.
  const std::vector<float> x_odd = {1.00390625f, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  std::vector<float> buf2(4 * 2, -1.0f);
  std::vector<uint16_t> buf16(4 * 2, 7);
  be.moe_dispatch(3, 1, 2, 2, x_odd.data(), row.data(), buf2.data(), buf16.data());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(buf16[i], to_bf16(buf2[i])) << i;
  EXPECT_NE(buf2[4], from_bf16(buf16[4])) << "1 + 2^-8 is not a bf16: the copy is rounded";
  // The copy alone (what a bf16 exchange sends): the same bits, no fp32 rows.
  std::vector<uint16_t> only16(4 * 2, 7);
  be.moe_dispatch(3, 1, 2, 2, x_odd.data(), row.data(), nullptr, only16.data());
  EXPECT_EQ(only16, buf16);
  std::vector<float> y(12, -1.0f);
  be.moe_combine(3, 1, 2, 2, buf.data(), row.data(), gate.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{.5f, 1, 1.5f, 2, 1.25f, 1.5f, 1.75f, 2, 0, 0, 0, 0}));
  std::vector<float> dbuf(8), dgate(3, 0.0f), dx(12);
  const std::vector<float> dy(12, 1.0f);
  std::vector<uint16_t> dbuf16(8, 7);
  be.moe_combine_backward(3, 1, 2, 2, dy.data(), buf.data(), row.data(), gate.data(), dbuf.data(),
                          dgate.data(), dbuf16.data());
  EXPECT_EQ(dgate, (std::vector<float>{10, 26, 0}));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(dbuf16[i], to_bf16(dbuf[i])) << i;
  std::vector<float> dgate_only(3, 0.0f);
  std::vector<uint16_t> dbuf_only16(8, 7);
  be.moe_combine_backward(3, 1, 2, 2, dy.data(), buf.data(), row.data(), gate.data(), nullptr,
                          dgate_only.data(), dbuf_only16.data());
  EXPECT_EQ(dgate_only, dgate);
  EXPECT_EQ(dbuf_only16, dbuf16);
  be.moe_dispatch_backward(3, 1, 2, 2, dbuf.data(), row.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<float>{.5f, .5f, .5f, .5f, .25f, .25f, .25f, .25f, 0, 0, 0, 0}));
}

// The four auxiliary losses of one group against the formulas evaluated here
// in double precision: S=3 items, E=2 experts, k=1.
TEST(AuxLosses, MatchHandComputation) {
  CpuBackend be;
  const int S = 3, E = 2;
  const std::vector<float> logits = {1.0f, 0.0f, 0.2f, 0.5f, -1.0f, 1.0f};
  const std::vector<float> noise = {0.1f, -0.2f, 0.3f, 0.0f, -0.1f, 0.2f};
  std::vector<float> noisy(6), probs = logits, noisy_probs(6);
  for (int i = 0; i < 6; ++i) noisy[i] = logits[i] + noise[i];
  noisy_probs = noisy;
  be.softmax_forward(S, E, 1.0f, probs.data());
  be.softmax_forward(S, E, 1.0f, noisy_probs.data());
  std::vector<int32_t> top(3);
  std::vector<float> topv(3);
  be.top_k(S, E, 1, noisy_probs.data(), top.data(), topv.data());
  const float sigma = 0.5f;
  std::vector<float> losses(4), d(6, 0.0f);
  RouterAuxArgs a{.groups = 1, .items = S, .experts = E, .k = 1, .sigma = sigma,
                  .logits = logits.data(), .noisy_logits = noisy.data(), .probs = probs.data(),
                  .noisy_probs = noisy_probs.data(), .top_index = top.data(),
                  .importance_weight = 1, .load_weight = 1, .gshard_weight = 1, .z_weight = 1,
                  .grad_scale = 1, .group_losses = losses.data(), .d_logits = d.data()};
  be.router_aux_losses(a);
  auto cv2 = [](std::vector<double> v) {
    double m = 0, var = 0;
    for (double x : v) m += x / v.size();
    for (double x : v) var += (x - m) * (x - m) / v.size();
    return var / (m * m);
  };
  std::vector<double> imp(E, 0), load(E, 0), frac(E, 0), pmean(E, 0);
  double z = 0;
  for (int s = 0; s < S; ++s) {
    const double l0 = logits[s * E], l1 = logits[s * E + 1];
    const double n0 = noisy[s * E], n1 = noisy[s * E + 1];
    const double p0 = 1 / (1 + std::exp(l1 - l0)), q0 = 1 / (1 + std::exp(n1 - n0));
    imp[0] += p0;
    imp[1] += 1 - p0;
    pmean[0] += q0 / S;
    pmean[1] += (1 - q0) / S;
    frac[q0 >= 0.5 ? 0 : 1] += 1.0 / S;
    const double thr = std::max(n0, n1);  // k = 1: the top noisy logit
    for (int e = 0; e < E; ++e)
      load[e] += 0.5 * std::erfc(-(logits[s * E + e] - thr) / sigma / std::sqrt(2.0)) / S;
    const double lse = std::log(std::exp(l0) + std::exp(l1));
    z += lse * lse / S;
  }
  EXPECT_NEAR(losses[0], cv2(imp), 1e-6);
  EXPECT_NEAR(losses[1], cv2(load), 1e-6);
  EXPECT_NEAR(losses[2], E * (frac[0] * pmean[0] + frac[1] * pmean[1]), 1e-6);
  EXPECT_NEAR(losses[3], z, 1e-6);
  EXPECT_GT(losses[0], 0.01);  // a non-trivial case
  EXPECT_GT(losses[1], 0.01);
}

}  // namespace
}  // namespace vmoe
