// Every layer's backward against central finite differences of the scalar
// objective L = <layer(x), R> for a fixed random R.
#include <gtest/gtest.h>

#include <functional>

#include "core/attention.h"
#include "core/cpu/cpu_backend.h"
#include "core/linear.h"
#include "core/loss.h"
#include "core/mlp.h"
#include "core/patch_embedding.h"
#include "core/transformer_block.h"
#include "core/workspace.h"
#include "tests/layer_harness.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::GradCheck;
using testing::LayerHarness;
using testing::random_normal;

TEST(LayerGrad, Linear) {
  LayerHarness h;
  Linear layer(h.store, "fc", 5, 7);
  h.forward = [&](const float* x, float* y) { layer.forward(h.be, x, 6, y); };
  h.backward = [&](const float* x, const float* dy, float* dx) {
    layer.backward(h.be, x, dy, 6, dx);
  };
  h.run(6 * 5, 6 * 7);
}

TEST(LayerGrad, LayerNorm) {
  LayerHarness h;
  LayerNorm layer(h.store, "ln", 9);
  Tensor mean(h.be, {4}), rstd(h.be, {4});
  h.forward = [&](const float* x, float* y) {
    layer.forward(h.be, x, 4, y, mean.data(), rstd.data());
  };
  h.backward = [&](const float* x, const float* dy, float* dx) {
    layer.backward(h.be, x, mean.data(), rstd.data(), dy, 4, dx);
  };
  h.run(4 * 9, 4 * 9);
}

TEST(LayerGrad, SelfAttention) {
  LayerHarness h;
  SelfAttention layer(h.be, h.store, "attn", 8, 2);
  h.forward = [&](const float* x, float* y) { layer.forward(x, 3, 5, y); };
  h.backward = [&](const float* x, const float* dy, float* dx) { layer.backward(x, dy, dx, h.ws); };
  h.run(3 * 5 * 8, 3 * 5 * 8);
}

TEST(LayerGrad, Mlp) {
  LayerHarness h;
  Mlp layer(h.be, h.store, "mlp", 6, 10);
  h.forward = [&](const float* x, float* y) { layer.forward(x, 2, 3, y, Pass{.training = true}); };
  h.backward = [&](const float* x, const float* dy, float* dx) { layer.backward(x, dy, dx, h.ws); };
  h.run(2 * 3 * 6, 2 * 3 * 6);
}

TEST(LayerGrad, TransformerBlock) {
  LayerHarness h;
  TransformerBlock block(h.be, h.store, "block", 8, 2, 1e-6f,
                         std::make_unique<Mlp>(h.be, h.store, "block/mlp", 8, 12));
  h.forward = [&](const float* x, float* y) { block.forward(x, 2, 4, y, Pass{.training = true}); };
  h.backward = [&](const float* x, const float* dy, float* dx) {
    h.be.copy(dx, dy, 2 * 4 * 8 * sizeof(float));  // backward works in place on dL/dy
    block.backward(x, dx, h.ws);
  };
  h.run(2 * 4 * 8, 2 * 4 * 8);
}

class PatchEmbeddingGrad : public ::testing::TestWithParam<bool> {};

TEST_P(PatchEmbeddingGrad, ParametersOnly) {
  LayerHarness h;
  PatchEmbedding layer(h.be, h.store, {8, 12, 3}, 4, 5, /*class_token=*/GetParam());
  const int64_t batch = 2;
  h.forward = [&](const float* x, float* y) { layer.forward(x, batch, y); };
  h.backward = [&](const float*, const float* dy, float*) { layer.backward(dy); };
  h.run(batch * 8 * 12 * 3, batch * layer.tokens() * 5, /*check_input=*/false);
}
INSTANTIATE_TEST_SUITE_P(ClassToken, PatchEmbeddingGrad, ::testing::Bool());

class PoolingGrad : public ::testing::TestWithParam<bool> {};

TEST_P(PoolingGrad, Input) {
  LayerHarness h;
  const bool mean = GetParam();
  h.forward = [&](const float* x, float* y) { h.be.pool_rows(3, 4, 5, mean, x, y); };
  h.backward = [&](const float*, const float* dy, float* dx) {
    h.be.pool_rows_backward(3, 4, 5, mean, dy, dx);
  };
  h.run(3 * 4 * 5, 3 * 5);
}
INSTANTIATE_TEST_SUITE_P(Mean, PoolingGrad, ::testing::Bool());

TEST(LayerGrad, Gelu) {
  LayerHarness h;
  Tensor pre(h.be, {40}), zero_bias(h.be, {40});
  h.be.fill(zero_bias.data(), 40, 0.0f);
  h.forward = [&](const float* x, float* y) {
    h.be.copy(pre.data(), x, 40 * sizeof(float));
    h.be.bias_gelu(1, 40, zero_bias.data(), pre.data(), y);
  };
  h.backward = [&](const float*, const float* dy, float* dx) {
    h.be.gelu_backward(1, 1, 40, pre.data(), dy, dx, nullptr, nullptr);
  };
  h.run(40, 40);
}

// The losses' gradients: the objective is the loss itself (dlogits with grad_scale 1).
class LossGrad : public ::testing::TestWithParam<bool> {};

TEST_P(LossGrad, Logits) {
  const bool multi = GetParam();
  CpuBackend be;
  const int rows = 4, classes = 5;
  ClassificationLoss loss(be, classes, multi);
  std::vector<float> z = random_normal(rows * classes, 3, 2.0f);
  std::vector<int32_t> labels = {0, 4, 2, 1};
  std::vector<uint8_t> hot(rows * classes, 0), mask = {1, 1, 0, 1};
  for (int r = 0; r < rows; ++r) hot[r * classes + labels[r]] = hot[r * classes + (r + 1) % classes] = 1;
  LossTargets t{rows, labels.data(), multi ? hot.data() : nullptr, mask.data()};
  if (multi) t.labels = nullptr;
  Tensor zd(be, {rows * classes}), dz(be, {rows * classes});
  zd.copy_from_host(z);
  loss.forward_backward(zd.data(), t, 1.0f, dz.data());
  const std::vector<float> grad = dz.to_host();
  for (int c = 0; c < classes; ++c) EXPECT_EQ(grad[2 * classes + c], 0.0f) << "masked row";
  GradCheck check;
  check.step = 1e-3f;
  check.run("dlogits", z, grad, [&] { zd.copy_from_host(z); },
            [&] { return loss.forward(zd.data(), t); });
}
INSTANTIATE_TEST_SUITE_P(MultiLabel, LossGrad, ::testing::Bool());

}  // namespace
}  // namespace vmoe
