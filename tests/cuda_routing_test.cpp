// The CUDA backend's routing and expert-buffer ops against the CPU backend
// (split from cuda_backend_test.cpp): routing decisions, slots and counts
// exactly equal, dispatch and combine (and their backward), top-k backward
// and the auxiliary losses within a normalised MSE of 1e-7. Without a GPU
// every test reports itself as skipped, with the reason.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "tests/cuda_ops_fixture.h"

namespace vmoe {
namespace {

using testing::CudaOps;
using testing::random_normal;

// Routing on realistic shapes: 4 groups of 8 images x 17 tokens, E = 8, k = 2.
TEST_F(CudaOps, RoutingDecisionsAreIdentical) {
  const int64_t groups = 4;
  const int items = 8 * 17, experts = 8, k = 2, capacity = 36;
  const int64_t n = groups * items;
  Both<float> logits = random(n * experts, 50);
  // Counter 1000 + step 5 x 77 (the step read in device memory).
  Both<int64_t> step = both(std::vector<int64_t>{5});
  cpu_.add_normal_noise(n * experts, 0.125f, 3, 4, 1000, step.cpu.data(), 77, logits.cpu.data());
  gpu_->add_normal_noise(n * experts, 0.125f, 3, 4, 1000, step.gpu, 77, logits.gpu);
  // The same normal_at draws; device logf/cosf may differ from glibc by an ulp.
  expect_close("add_normal_noise", logits, 1e-12);
  cpu_.softmax_forward(n, experts, 1.0f, logits.cpu.data());
  gpu_->copy_to_device(logits.gpu, logits.cpu.data(), logits.cpu.size() * sizeof(float));
  Both<int32_t> index = both(std::vector<int32_t>(n * k));
  Both<float> gate = both(std::vector<float>(n * k));
  cpu_.top_k(n, experts, k, logits.cpu.data(), index.cpu.data(), gate.cpu.data());
  gpu_->top_k(n, experts, k, logits.gpu, index.gpu, gate.gpu);
  expect_equal("top_k index", index);
  expect_close("top_k value", gate, 0.0);
  std::vector<float> host_mask(groups * 8, 1.0f);
  host_mask[3] = host_mask[17] = 0.0f;  // padding images
  Both<float> mask = both(host_mask);
  for (bool bpr : {true, false}) {
    Both<int32_t> slot = both(std::vector<int32_t>(n * k));
    cpu_.assign_slots(groups, items, k, experts, capacity, bpr, index.cpu.data(), gate.cpu.data(),
                      mask.cpu.data(), 17, slot.cpu.data());
    gpu_->assign_slots(groups, items, k, experts, capacity, bpr, index.gpu, gate.gpu, mask.gpu, 17,
                       slot.gpu);
    expect_equal(bpr ? "assign_slots (BPR)" : "assign_slots (vanilla)", slot);
    Both<int64_t> counts = both(std::vector<int64_t>(experts + 1, 5));
    cpu_.count_assignments(n, k, experts, index.cpu.data(), slot.cpu.data(), mask.cpu.data(), 17,
                           counts.cpu.data());
    gpu_->count_assignments(n, k, experts, index.gpu, slot.gpu, mask.gpu, 17, counts.gpu);
    expect_equal("count_assignments", counts);
    for (int item_rows : {1, 17}) {
      Both<int32_t> row = both(std::vector<int32_t>(n * k));
      cpu_.moe_buffer_rows(groups, items, k, experts, capacity, item_rows, index.cpu.data(),
                           slot.cpu.data(), row.cpu.data());
      gpu_->moe_buffer_rows(groups, items, k, experts, capacity, item_rows, index.gpu, slot.gpu,
                            row.gpu);
      expect_equal("moe_buffer_rows", row);
    }
  }
}

// 40 items of 3 rows (whole images), k = 2, some choices dropped; dim 16
// (packs of 4 floats), 6 (one float at a time) and 1,400 (an item longer
// than one batch of the block's loads).
TEST_F(CudaOps, DispatchCombineAndBackward) {
  for (const int dim : {16, 6, 1400}) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    const int64_t items = 40;
    const int k = 2, item_rows = 3, buffer_rows = 300;
    std::vector<int32_t> host_row(items * k);
    for (int64_t i = 0; i < items * k; ++i)
      host_row[i] = (i % 7 == 3) ? -1 : static_cast<int32_t>(((i * 37) % 100) * item_rows);
    // Distinct rows per kept choice (a buffer row holds one item).
    std::vector<bool> used(buffer_rows, false);
    for (int32_t& r : host_row) {
      if (r < 0) continue;
      while (used[r]) r = (r + item_rows) % buffer_rows;
      used[r] = true;
    }
    Both<int32_t> row = both(host_row);
    Both<float> x = random(items * item_rows * dim, 51), gate = random(items * k, 52);
    Both<float> buf = both(std::vector<float>(buffer_rows * dim, 0.0f));
    Both<uint16_t> buf16 = both(std::vector<uint16_t>(buffer_rows * dim, 0));
    cpu_.moe_dispatch(items, k, item_rows, dim, x.cpu.data(), row.cpu.data(), buf.cpu.data(),
                      buf16.cpu.data());
    gpu_->moe_dispatch(items, k, item_rows, dim, x.gpu, row.gpu, buf.gpu, buf16.gpu);
    expect_close("moe_dispatch", buf, 0.0);
    expect_equal("moe_dispatch's bf16 copy", buf16);
    // The copy alone (what a bf16 exchange sends): the same bits.
    Both<uint16_t> only16 = both(std::vector<uint16_t>(buffer_rows * dim, 0));
    gpu_->moe_dispatch(items, k, item_rows, dim, x.gpu, row.gpu, nullptr, only16.gpu);
    EXPECT_EQ(from_gpu(only16), buf16.cpu) << "moe_dispatch's bf16 copy alone";
    Both<float> y = random(items * item_rows * dim, 53);
    cpu_.moe_combine(items, k, item_rows, dim, buf.cpu.data(), row.cpu.data(), gate.cpu.data(),
                     y.cpu.data());
    gpu_->moe_combine(items, k, item_rows, dim, buf.gpu, row.gpu, gate.gpu, y.gpu);
    expect_close("moe_combine", y);
    Both<float> dbuf = both(std::vector<float>(buffer_rows * dim, 0.0f)),
                dgate = random(items * k, 54);
    Both<uint16_t> dbuf16 = both(std::vector<uint16_t>(buffer_rows * dim, 0));
    cpu_.moe_combine_backward(items, k, item_rows, dim, y.cpu.data(), buf.cpu.data(),
                              row.cpu.data(), gate.cpu.data(), dbuf.cpu.data(), dgate.cpu.data(),
                              dbuf16.cpu.data());
    gpu_->moe_combine_backward(items, k, item_rows, dim, y.gpu, buf.gpu, row.gpu, gate.gpu,
                               dbuf.gpu, dgate.gpu, dbuf16.gpu);
    expect_close("moe_combine_backward dbuf", dbuf);
    EXPECT_EQ(from_gpu(dbuf16), testing::host_bf16(from_gpu(dbuf)))
        << "moe_combine_backward's bf16 copy";
    expect_close("moe_combine_backward dgate", dgate);
    {  // The copy alone: the same bits as beside the fp32 rows, and the same dgate.
      Both<float> dgate_only = both(std::vector<float>(items * k, 0.0f)),
                  dgate_beside = both(std::vector<float>(items * k, 0.0f));
      Both<uint16_t> only16 = both(std::vector<uint16_t>(buffer_rows * dim, 0));
      gpu_->moe_combine_backward(items, k, item_rows, dim, y.gpu, buf.gpu, row.gpu, gate.gpu,
                                 nullptr, dgate_only.gpu, only16.gpu);
      gpu_->moe_combine_backward(items, k, item_rows, dim, y.gpu, buf.gpu, row.gpu, gate.gpu,
                                 dbuf.gpu, dgate_beside.gpu, dbuf16.gpu);
      EXPECT_EQ(from_gpu(only16), from_gpu(dbuf16)) << "moe_combine_backward's bf16 copy alone";
      EXPECT_EQ(from_gpu(dgate_only), from_gpu(dgate_beside));
    }
    Both<float> dx = random(items * item_rows * dim, 55);
    cpu_.moe_dispatch_backward(items, k, item_rows, dim, dbuf.cpu.data(), row.cpu.data(),
                               dx.cpu.data());
    gpu_->moe_dispatch_backward(items, k, item_rows, dim, dbuf.gpu, row.gpu, dx.gpu);
    expect_close("moe_dispatch_backward", dx);
    // [sources 3, experts 4, 25 rows] -> expert-major, and back.
    Both<float> out = random(300 * dim, 56), back = random(300 * dim, 57);
    cpu_.transpose_blocks(3, 4, 25 * dim, buf.cpu.data(), out.cpu.data());
    gpu_->transpose_blocks(3, 4, 25 * dim, buf.gpu, out.gpu);
    expect_close("transpose_blocks", out, 0.0);
    cpu_.transpose_blocks(4, 3, 25 * dim, out.cpu.data(), back.cpu.data());
    gpu_->transpose_blocks(4, 3, 25 * dim, out.gpu, back.gpu);
    expect_close("transpose_blocks back", back, 0.0);
    EXPECT_EQ(back.cpu, buf.cpu);
    std::vector<uint16_t> host16(300 * dim);
    for (size_t i = 0; i < host16.size(); ++i) host16[i] = static_cast<uint16_t>(i * 7919);
    Both<uint16_t> in16 = both(host16), out16 = both(std::vector<uint16_t>(host16.size()));
    cpu_.transpose_blocks(3, 4, 25 * dim, in16.cpu.data(), out16.cpu.data());
    gpu_->transpose_blocks(3, 4, 25 * dim, in16.gpu, out16.gpu);
    expect_equal("transpose_blocks", out16);
  }
}

// Groups of fewer and of more items than the CUDA kernel stages at once
// (chunks of up to 256), with and without router noise.
TEST_F(CudaOps, TopKBackwardAndAuxLosses) {
  struct Case {
    int items, experts;
    float sigma;
  };
  for (const Case c : {Case{50, 6, 0.5f}, Case{600, 8, 0.5f}, Case{300, 8, 0.0f}}) {
    SCOPED_TRACE("items " + std::to_string(c.items) + ", experts " + std::to_string(c.experts));
    const int64_t groups = 3;
    const int items = c.items, experts = c.experts, k = 2;
    const int64_t n = groups * items;
    Both<float> logits = random(n * experts, 60), noise = random(n * experts, 61, 0.2f);
    std::vector<float> noisy(logits.cpu), probs(logits.cpu);
    for (size_t i = 0; i < noisy.size(); ++i) noisy[i] += noise.cpu[i];
    std::vector<float> noisy_probs = noisy;
    cpu_.softmax_forward(n, experts, 1.0f, probs.data());
    cpu_.softmax_forward(n, experts, 1.0f, noisy_probs.data());
    std::vector<int32_t> top(n * k);
    std::vector<float> topv(n * k);
    cpu_.top_k(n, experts, k, noisy_probs.data(), top.data(), topv.data());
    Both<float> bn = both(noisy), bp = both(probs), bnp = both(noisy_probs);
    Both<int32_t> bt = both(top);
    Both<float> dvalue = random(n * k, 62), d = random(n * experts, 63);
    cpu_.top_k_backward(n, experts, k, bt.cpu.data(), dvalue.cpu.data(), d.cpu.data());
    gpu_->top_k_backward(n, experts, k, bt.gpu, dvalue.gpu, d.gpu);
    expect_close("top_k_backward", d);
    Both<float> losses = both(std::vector<float>(groups * 4, 0.0f)),
                dlogits = random(n * experts, 64);
    RouterAuxArgs args{.groups = groups,
                       .items = items,
                       .experts = experts,
                       .k = k,
                       .sigma = c.sigma,
                       .importance_weight = 0.01f,
                       .load_weight = 0.02f,
                       .gshard_weight = 0.03f,
                       .z_weight = 0.001f,
                       .grad_scale = 0.25f};
    RouterAuxArgs on_cpu = args, on_gpu = args;
    on_cpu.logits = logits.cpu.data();
    on_cpu.noisy_logits = bn.cpu.data();
    on_cpu.probs = bp.cpu.data();
    on_cpu.noisy_probs = bnp.cpu.data();
    on_cpu.top_index = bt.cpu.data();
    on_cpu.group_losses = losses.cpu.data();
    on_cpu.d_logits = dlogits.cpu.data();
    on_gpu.logits = logits.gpu;
    on_gpu.noisy_logits = bn.gpu;
    on_gpu.probs = bp.gpu;
    on_gpu.noisy_probs = bnp.gpu;
    on_gpu.top_index = bt.gpu;
    on_gpu.group_losses = losses.gpu;
    on_gpu.d_logits = dlogits.gpu;
    cpu_.router_aux_losses(on_cpu);
    gpu_->router_aux_losses(on_gpu);
    expect_close("router_aux_losses group losses", losses);
    expect_close("router_aux_losses d_logits", dlogits);
  }
}

}  // namespace
}  // namespace vmoe
