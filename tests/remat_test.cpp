// Activation recomputation (ViTConfig::remat, --remat): the same gradients
// bit for bit as without it, for the dense ViT, the V-MoE (noisy token
// routing, drops, every auxiliary loss) and the Mobile V-MoE (image router,
// super-class loss), over several optimiser steps; and the blocks'
// activations are really not held between forward and backward.
#include <gtest/gtest.h>

#include <cstring>  // first: it defines __GLIBC__
#include <memory>
#ifdef __GLIBC__
#include <malloc.h>  // mallinfo2
#endif

#include "core/cpu/cpu_backend.h"
#include "core/loss.h"
#include "core/optimizer.h"
#include "core/vit.h"
#include "parallel/image_router.h"
#include "parallel/moe_layer.h"
#include "parallel/moe_model.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

// What one training run exposes, step by step, to compare bit for bit.
struct Record {
  std::vector<std::vector<float>> grads, logits;
  std::vector<double> aux_losses;
  std::vector<Metric> metrics;      // routing metrics after the last step
  std::vector<float> eval_logits;   // an evaluation forward after training
  std::vector<int64_t> eval_counts; // its routing counts (first router)
};

struct Case {
  ViTConfig vit = testing::tiny_vit(Pooling::kToken, 12);
  MoeConfig moe;  // disabled: a dense ViT
  Precision precision = Precision::kFp32;
  int64_t batch = 4;
};

Record train(const Case& c, bool remat, int steps = 3) {
  CpuBackend be;
  be.set_precision(c.precision);
  ViTConfig vit = c.vit;
  vit.remat = remat;
  ParamStore store;
  ViT model(be, store, vit, moe_extensions(be, c.moe, vit, /*seed=*/9));
  store.allocate(be);
  store.initialize(4);
  testing::randomize_parameters(store, 11, 0.3f);  // no zero head: gradients everywhere
  Optimizer opt({.kind = OptimizerKind::kAdam, .grad_clip_norm = 1.0f}, store);
  const int classes = vit.num_classes;
  const int64_t pixels = int64_t{vit.image.height} * vit.image.width * vit.image.channels;
  Tensor x(be, {c.batch * pixels}), dlogits(be, {c.batch * classes});
  std::vector<int32_t> labels, superclass;
  for (int64_t i = 0; i < c.batch; ++i) {
    labels.push_back(static_cast<int32_t>((i * 7 + 1) % classes));
    superclass.push_back(static_cast<int32_t>((i * 5 + 2) % std::max(1, c.moe.num_experts)));
  }
  ClassificationLoss loss(be, classes, false);
  const LossTargets targets{c.batch, labels.data(), nullptr, nullptr};
  ImageRouter* image_router = image_router_of(model);
  Record r;
  for (int step = 0; step < steps; ++step) {
    x.copy_from_host(testing::random_normal(static_cast<size_t>(c.batch * pixels), 20 + step));
    if (image_router) image_router->set_superclass(superclass.data(), c.batch);
    model.forward(x.data(), c.batch,
                  Pass{.training = true, .step = step, .global_images = c.batch});
    store.zero_grads();
    loss.forward_backward(model.logits(), targets, 1.0f / c.batch, dlogits.data());
    model.backward(dlogits.data());
    r.grads.push_back(store.grads().to_host());
    r.logits.push_back(Tensor::to_host_of(model.logits(), c.batch * classes, be));
    r.aux_losses.push_back(model.aux_loss());
    opt.step(1e-2f);
  }
  model.metrics(r.metrics);
  // Evaluation: another capacity, a padding image.
  std::vector<Router*> routers = routers_of(model);
  for (Router* router : routers) router->reset_counts();
  Tensor mask(be, {c.batch});
  std::vector<float> m(static_cast<size_t>(c.batch), 1.0f);
  m.back() = 0.0f;
  mask.copy_from_host(m);
  model.forward(x.data(), c.batch, Pass{.image_mask = mask.data()});
  r.eval_logits = Tensor::to_host_of(model.logits(), c.batch * classes, be);
  if (!routers.empty()) r.eval_counts = routers.front()->counts();
  return r;
}

void expect_same_training(const Case& c) {
  const Record plain = train(c, false), remat = train(c, true);
  for (size_t s = 0; s < plain.grads.size(); ++s) {
    const std::string step = "step " + std::to_string(s);
    testing::expect_identical(plain.grads[s], remat.grads[s], step + " gradients");
    testing::expect_identical(plain.logits[s], remat.logits[s], step + " logits");
    EXPECT_EQ(plain.aux_losses[s], remat.aux_losses[s]) << step;
  }
  // Routing metrics (losses, loads, drops) are counted once per step, not again in the recompute.
  ASSERT_EQ(plain.metrics.size(), remat.metrics.size());
  for (size_t i = 0; i < plain.metrics.size(); ++i) {
    EXPECT_EQ(plain.metrics[i].name, remat.metrics[i].name);
    EXPECT_EQ(plain.metrics[i].value, remat.metrics[i].value) << plain.metrics[i].name;
  }
  testing::expect_identical(plain.eval_logits, remat.eval_logits, "evaluation logits");
  EXPECT_EQ(plain.eval_counts, remat.eval_counts);
}

MoeConfig small_moe(std::vector<int> layers) {
  MoeConfig m;
  m.layers = std::move(layers);
  m.num_experts = 4;
  m.num_selected = 2;
  m.group_size = 2;
  m.capacity_ratio = 0.5;  // drops
  m.eval_capacity_ratio = 1.0;
  m.importance_loss_weight = m.load_loss_weight = 0.1f;
  m.gshard_loss_weight = 0.1f;
  m.z_loss_weight = 0.01f;
  return m;
}

class RematDense : public ::testing::TestWithParam<Pooling> {};

TEST_P(RematDense, SameGradientsBitForBit) {
  Case c;
  c.vit = testing::tiny_vit(GetParam(), 12);
  c.vit.num_layers = 3;
  c.vit.pre_logits_size = 5;
  expect_same_training(c);
}
INSTANTIATE_TEST_SUITE_P(Pooling, RematDense, ::testing::Values(Pooling::kToken, Pooling::kGap),
                         [](const auto& info) { return std::string(pooling_name(info.param)); });

class RematVMoE : public ::testing::TestWithParam<bool> {};  // batch-priority routing

// Dense, MoE, dense, MoE: the pool serves both kinds of block in turn.
TEST_P(RematVMoE, NoisyTokenRoutingSameGradientsBitForBit) {
  Case c;
  c.vit.num_layers = 4;
  c.moe = small_moe({1, 3});
  c.moe.batch_priority = GetParam();
  expect_same_training(c);
}
INSTANTIATE_TEST_SUITE_P(Routing, RematVMoE, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "bpr" : "vanilla"; });

TEST(Remat, MobileVMoESameGradientsBitForBit) {
  Case c;
  c.vit.num_layers = 4;
  c.moe = small_moe({1, 3});
  c.moe.routing = Routing::kImage;
  c.moe.num_selected = 1;
  c.moe.superclass_loss_weight = 0.3f;
  expect_same_training(c);
}

TEST(Remat, MixedPrecisionSameGradientsBitForBit) {
  Case c;
  c.vit.num_layers = 2;
  c.moe = small_moe({1});
  c.precision = Precision::kBf16;
  expect_same_training(c);
}

// A recompute routes exactly as the forward did, reports the same auxiliary
// loss, and does not count its choices again.
TEST(Remat, RecomputeRoutesIdentically) {
  CpuBackend be;
  ParamStore store;
  const MoeConfig m = small_moe({1});
  MoeLayer layer(be, store, "moe", m, 8, 12, /*seed=*/3, /*block=*/1);
  store.allocate(be);
  testing::randomize_parameters(store, 2);
  const int64_t images = 4, tokens = 5, rows = images * tokens;
  Tensor x(be, {rows, 8}), y(be, {rows, 8}), y2(be, {rows, 8});
  x.copy_from_host(testing::random_normal(rows * 8, 4));
  const Pass pass{.training = true, .step = 6, .global_images = images};
  auto decisions = [&] {
    const Router& r = layer.router();
    return std::tuple{IntTensor::to_host_of(r.expert(), rows * 2, be),
                      IntTensor::to_host_of(r.slot(), rows * 2, be),
                      Tensor::to_host_of(r.gate(), rows * 2, be)};
  };
  layer.forward(x.data(), images, tokens, y.data(), pass);
  const auto [e, s, g] = decisions();
  const double aux = layer.aux_loss();
  const std::vector<int64_t> counts = layer.router().counts();
  Pass again = pass;
  again.recompute = true;
  layer.forward(x.data(), images, tokens, y2.data(), again);
  const auto [e2, s2, g2] = decisions();
  EXPECT_EQ(e, e2);
  EXPECT_EQ(s, s2);
  testing::expect_identical(g, g2, "gates");
  testing::expect_identical(y.to_host(), y2.to_host(), "outputs");
  EXPECT_EQ(layer.aux_loss(), aux);
  EXPECT_EQ(layer.router().counts(), counts);
}

#ifdef __GLIBC__
// Heap bytes in use (small chunks and mmapped ones).
int64_t heap_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

// Heap growth over the first training forward: what the model holds for backward.
int64_t held_after_forward(const ViTConfig& vit, const MoeConfig& moe, int64_t batch) {
  CpuBackend be;
  ParamStore store;
  ViT model(be, store, vit, moe_extensions(be, moe, vit, 9));
  store.allocate(be);
  store.initialize(1);
  const int64_t pixels = int64_t{vit.image.height} * vit.image.width * vit.image.channels;
  Tensor x(be, {batch * pixels});
  x.copy_from_host(testing::random_normal(static_cast<size_t>(batch * pixels), 3));
  const int64_t before = heap_in_use();
  model.forward(x.data(), batch, Pass{.training = true, .global_images = batch});
  return heap_in_use() - before;
}

TEST(Remat, BlocksHoldNoActivationsBetweenForwardAndBackward) {
  ViTConfig vit = testing::tiny_vit(Pooling::kToken, 64);
  vit.hidden_size = 32;
  vit.num_layers = 6;
  const MoeConfig moe = small_moe({1, 3, 5});
  held_after_forward(vit, moe, 16);  // warm up the BLAS and the allocator
  const int64_t plain = held_after_forward(vit, moe, 16);
  vit.remat = true;
  const int64_t remat = held_after_forward(vit, moe, 16);
  // Six blocks' activations against one block's (the pool) plus the blocks'
  // inputs, which both keep.
  EXPECT_LT(remat, plain * 2 / 5) << "plain " << plain << " bytes, remat " << remat << " bytes";
}
#endif

}  // namespace
}  // namespace vmoe
