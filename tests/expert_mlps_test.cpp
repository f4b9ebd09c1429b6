// ExpertMlps on packed buffers (the CPU's layout: each expert's rows in parts,
// live rows first): every expert computes, bit for bit, what an ExpertMlps
// holding that expert alone computes on its rows. So taking the experts one
// at a time through a pass's ops, with the live counts and operand offsets
// of each, neither mixes experts nor changes a product.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/param_store.h"
#include "core/workspace.h"
#include "parallel/experts.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

constexpr int kExperts = 3, kDim = 8, kHidden = 24, kParts = 2, kPartRows = 6;
constexpr int64_t kRows = kParts * kPartRows;  // per expert

// What a pass gives back: the output (or input gradient) on live rows, and
// the parameter gradients of each expert.
struct Pass {
  std::vector<float> out, din, grads;
};

// Rows of expert e (of `experts`) that hold data: part s's first live[s] rows.
template <typename Visit>
void for_live_rows(const std::vector<int32_t>& live, int experts, int e, Visit visit) {
  for (int s = 0; s < kParts; ++s)
    for (int r = 0; r < live[s * experts + e]; ++r) visit(int64_t{s} * kPartRows + r);
}

// Forward and backward of `local` experts (first one `first`) on `in` and
// `dout` [local, kRows, kDim], with parameters from `params` (the global
// [kExperts, ...] tensors, w1 | b1 | w2 | b2).
Pass run(int first, int local, const std::vector<float>& in, const std::vector<float>& dout,
         const std::vector<int32_t>& live, const std::vector<std::vector<float>>& params) {
  CpuBackend be;
  ParamStore store;
  ExpertMlps experts(be, store, "experts", kExperts, first, local, kDim, kHidden);
  store.allocate(be);
  for (ParamId id = 0; id < store.count(); ++id) {
    const int64_t per_expert = store.numel(id) / local;
    std::memcpy(store.value(id), params[id].data() + first * per_expert,
                sizeof(float) * store.numel(id));
  }
  store.zero_grads();
  Workspace ws(be);
  Pass p;
  p.out.assign(in.size(), 0.0f);
  p.din.assign(in.size(), 0.0f);
  experts.forward(in.data(), kRows, p.out.data(), live.data(), kParts);
  experts.backward(in.data(), dout.data(), p.din.data(), ws);
  for (ParamId id = 0; id < store.count(); ++id)
    p.grads.insert(p.grads.end(), store.grad(id), store.grad(id) + store.numel(id));
  return p;
}

TEST(ExpertMlps, PackedExpertsEachComputeWhatTheyComputeAlone) {
  // Uneven live rows: a full part, an empty one, one row.
  const std::vector<int32_t> live = {kPartRows, 2, 0, 3, kPartRows, 1};  // [parts, experts]
  const std::vector<float> in = testing::random_normal(size_t{kExperts} * kRows * kDim, 1, 1.0f);
  const std::vector<float> dout = testing::random_normal(size_t{kExperts} * kRows * kDim, 2, 1.0f);
  const std::vector<std::vector<float>> params = {
      testing::random_normal(size_t{kExperts} * kDim * kHidden, 3, 0.3f),
      testing::random_normal(size_t{kExperts} * kHidden, 4, 0.3f),
      testing::random_normal(size_t{kExperts} * kHidden * kDim, 5, 0.3f),
      testing::random_normal(size_t{kExperts} * kDim, 6, 0.3f)};
  const Pass all = run(0, kExperts, in, dout, live, params);

  // The gradients of `all` are [param][expert]: expert e's slice of each.
  auto grads_of = [&](int e) {
    std::vector<float> g;
    int64_t offset = 0;
    for (const std::vector<float>& p : params) {
      const int64_t per_expert = static_cast<int64_t>(p.size()) / kExperts;
      g.insert(g.end(), all.grads.begin() + offset + e * per_expert,
               all.grads.begin() + offset + (e + 1) * per_expert);
      offset += static_cast<int64_t>(p.size());
    }
    return g;
  };
  const int64_t block = kRows * kDim;
  for (int e = 0; e < kExperts; ++e) {
    SCOPED_TRACE("expert " + std::to_string(e));
    std::vector<int32_t> own(kParts);
    for (int s = 0; s < kParts; ++s) own[s] = live[s * kExperts + e];
    const std::vector<float> own_in(in.begin() + e * block, in.begin() + (e + 1) * block);
    const std::vector<float> own_dout(dout.begin() + e * block, dout.begin() + (e + 1) * block);
    const Pass alone = run(e, 1, own_in, own_dout, own, params);
    int64_t rows = 0;
    for_live_rows(own, 1, 0, [&](int64_t r) {
      ++rows;
      for (int d = 0; d < kDim; ++d) {
        EXPECT_EQ(all.out[e * block + r * kDim + d], alone.out[r * kDim + d]) << "row " << r;
        EXPECT_EQ(all.din[e * block + r * kDim + d], alone.din[r * kDim + d]) << "row " << r;
      }
    });
    EXPECT_EQ(rows, own[0] + own[1]);
    EXPECT_EQ(grads_of(e), alone.grads);
  }
  // Not vacuous: an expert with live rows has nonzero gradients.
  double norm = 0;
  for (float g : all.grads) norm += double{g} * g;
  EXPECT_GT(norm, 0.0);
}

}  // namespace
}  // namespace vmoe
