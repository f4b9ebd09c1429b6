// The whole ViT: gradient check on a tiny model, overfitting a tiny batch,
// determinism and parameter layout.
#include <gtest/gtest.h>

#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/loss.h"
#include "core/optimizer.h"
#include "core/vit.h"
#include "tests/model_grad.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using testing::tiny_vit;

class ModelGrad : public ::testing::TestWithParam<Pooling> {};

TEST_P(ModelGrad, EveryParameter) {
  CpuBackend be;
  ParamStore store;
  ViT model(be, store, tiny_vit(GetParam()));
  store.allocate(be);
  testing::randomize_parameters(store, 11, 0.3f);
  testing::check_model_gradients(
      be, store, model,
      {.batch = 3, .images = testing::random_normal(3 * 8 * 8 * 2, 5), .labels = {2, 0, 1}});
}
INSTANTIATE_TEST_SUITE_P(Pooling, ModelGrad, ::testing::Values(Pooling::kToken, Pooling::kGap),
                         [](const auto& info) { return std::string(pooling_name(info.param)); });

// The pre-logits layer (tanh dense, as the JFT models): its gradients, and
// that the head and the features read its output.
TEST(Model, PreLogitsLayer) {
  CpuBackend be;
  ParamStore store;
  ViTConfig c = tiny_vit();
  c.pre_logits_size = 5;
  ViT model(be, store, c);
  store.allocate(be);
  testing::randomize_parameters(store, 12, 0.3f);
  ASSERT_TRUE(store.find("pre_logits/kernel").has_value());
  EXPECT_EQ(store.numel(*store.find("head/kernel")), 5 * c.num_classes);
  testing::check_model_gradients(
      be, store, model,
      {.batch = 3, .images = testing::random_normal(3 * 8 * 8 * 2, 6), .labels = {1, 2, 0}});
  // Features are tanh outputs, in (-1, 1).
  const std::vector<float> features = Tensor::to_host_of(model.pre_logits(), 3 * 5, be);
  for (float f : features) EXPECT_LT(std::fabs(f), 1.0f);
  EXPECT_GT(model.forward_flops_per_image(), 0.0);
}

TEST(Model, OverfitsATinyBatch) {
  CpuBackend be;
  ParamStore store;
  ViTConfig c = tiny_vit();
  c.hidden_size = 16;
  c.mlp_dim = 32;
  c.num_classes = 4;
  ViT model(be, store, c);
  store.allocate(be);
  store.initialize(1);
  Optimizer opt({.kind = OptimizerKind::kAdam, .grad_clip_norm = 1.0f}, store);
  const int64_t batch = 8;
  Tensor x(be, {batch * 8 * 8 * 2}), dlogits(be, {batch * 4});
  x.copy_from_host(testing::random_normal(batch * 8 * 8 * 2, 9));
  std::vector<int32_t> labels = {0, 1, 2, 3, 3, 2, 1, 0};
  ClassificationLoss loss(be, 4, false);
  const LossTargets t{batch, labels.data(), nullptr, nullptr};
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    model.forward(x.data(), batch, Pass{.training = true});
    store.zero_grads();
    const double l = loss.forward_backward(model.logits(), t, 1.0f / batch, dlogits.data()) / batch;
    model.backward(dlogits.data());
    testing::clip_gradients(store, 1.0f);
    opt.step(3e-3f);
    if (step == 0) first = l;
    last = l;
  }
  EXPECT_NEAR(first, std::log(4.0), 1e-5) << "a zero head predicts uniformly";
  EXPECT_LT(last, 0.02);
  std::vector<float> logits(batch * 4);
  be.copy_to_host(logits.data(), model.logits(), logits.size() * sizeof(float));
  EXPECT_EQ(count_correct_at_1(logits.data(), 4, t), batch);
}

TEST(Model, ForwardIsDeterministicAndBatchIndependent) {
  // Each image's logits depend only on that image (no cross-batch leakage).
  CpuBackend be;
  ParamStore store;
  ViT model(be, store, tiny_vit(Pooling::kGap));
  store.allocate(be);
  testing::randomize_parameters(store, 3, 0.3f);
  const std::vector<float> images = testing::random_normal(4 * 128, 2);
  Tensor x(be, {4 * 128});
  x.copy_from_host(images);
  model.forward(x.data(), 4, Pass{});
  std::vector<float> all(12);
  be.copy_to_host(all.data(), model.logits(), 12 * sizeof(float));
  model.forward(x.data() + 2 * 128, 1, Pass{});
  std::vector<float> one(3);
  be.copy_to_host(one.data(), model.logits(), 3 * sizeof(float));
  for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(one[c], all[2 * 3 + c]);
}

TEST(Model, InitialisationFollowsViT) {
  CpuBackend be;
  ParamStore store;
  ViTConfig c = tiny_vit();
  ViT model(be, store, c);
  store.allocate(be);
  store.initialize(42);
  auto host = [&](const std::string& name) {
    const ParamId id = *store.find(name);
    std::vector<float> v(store.numel(id));
    be.copy_to_host(v.data(), store.value(id), v.size() * sizeof(float));
    return v;
  };
  for (float v : host("head/kernel")) EXPECT_EQ(v, 0.0f);
  for (float v : host("cls")) EXPECT_EQ(v, 0.0f);
  for (float v : host("encoder/block_0/ln1/scale")) EXPECT_EQ(v, 1.0f);
  const std::vector<float> qkv = host("encoder/block_1/attention/qkv/kernel");
  const float limit = std::sqrt(6.0f / (8 + 8));  // each of q, k, v is D x D
  float max_abs = 0;
  for (float v : qkv) max_abs = std::max(max_abs, std::fabs(v));
  EXPECT_LE(max_abs, limit);
  EXPECT_GT(max_abs, 0.8f * limit);
  const std::vector<float> pos = host("pos_embedding");
  double sq = 0;
  for (float v : pos) sq += v * v;
  EXPECT_NEAR(std::sqrt(sq / pos.size()), 0.02, 0.006);
  EXPECT_TRUE(store.spec(*store.find("head/kernel")).weight_decay);
  EXPECT_FALSE(store.spec(*store.find("head/bias")).weight_decay);
  EXPECT_FALSE(store.spec(*store.find("pos_embedding")).weight_decay);
}

TEST(Model, MultiLabelHeadBiasStartsAtMinusTen) {
  CpuBackend be;
  ParamStore store;
  ViTConfig c = tiny_vit();
  c.multi_label = true;
  ViT model(be, store, c);
  store.allocate(be);
  store.initialize(1);
  std::vector<float> bias(3);
  be.copy_to_host(bias.data(), store.value(*store.find("head/bias")), 3 * sizeof(float));
  for (float b : bias) EXPECT_EQ(b, -10.0f);
}

TEST(Model, RejectsImpossibleShapes) {
  CpuBackend be;
  auto expect_error = [&](ViTConfig c, const std::string& text) {
    ParamStore store;
    const std::string error = testing::error_of([&] { ViT model(be, store, c); });
    EXPECT_NE(error.find(text), std::string::npos) << "got: '" << error << "', want: " << text;
  };
  ViTConfig c = tiny_vit();
  c.patch_size = 3;
  expect_error(c, "--patch_size=3 must divide the image size 8x8");
  c = tiny_vit();
  c.num_heads = 3;
  expect_error(c, "--hidden_size=8 must be divisible by --num_heads=3");
  c = tiny_vit();
  c.num_layers = 0;
  expect_error(c, "--num_layers must be positive, got 0");
  c = tiny_vit();
  c.mlp_dim = -4;
  expect_error(c, "--mlp_dim must be positive, got -4");
}

}  // namespace
}  // namespace vmoe
