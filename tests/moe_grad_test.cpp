// Gradients through mixture-of-experts layers (finite differences, with the
// router noise fixed by its counter-based keys), and the layer's properties:
// dropped tokens get no MoE output, and groups routed in separate calls give
// exactly what one call gives.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/cpu/cpu_backend.h"
#include "parallel/image_router.h"
#include "parallel/moe_layer.h"
#include "parallel/moe_model.h"
#include "tests/layer_harness.h"
#include "tests/model_grad.h"

namespace vmoe {
namespace {

MoeConfig small_moe() {
  MoeConfig m;
  m.layers = {1};
  m.num_experts = 4;
  m.num_selected = 2;
  m.group_size = 2;
  m.capacity_ratio = 0.5;  // 20 choices per group for 16 slots: some are dropped
  m.importance_loss_weight = 0.1f;
  m.load_loss_weight = 0.1f;
  m.gshard_loss_weight = 0.1f;
  m.z_loss_weight = 0.01f;
  return m;
}

TEST(MoeGrad, TokenRoutedLayerWithDropsAndAuxLosses) {
  testing::LayerHarness h;
  const MoeConfig m = small_moe();
  MoeLayer layer(h.be, h.store, "moe", m, 8, 12, /*seed=*/3, /*block=*/1);
  const Pass pass{.training = true, .step = 5};
  h.forward = [&](const float* x, float* y) { layer.forward(x, 4, 5, y, pass); };
  h.backward = [&](const float* x, const float* dy, float* dx) {
    layer.backward(x, dy, dx, h.ws);
  };
  h.extra_objective = [&] { return layer.aux_loss(); };
  h.check.step = 5e-3f;
  h.run(4 * 5 * 8, 4 * 5 * 8);
  std::vector<Metric> metrics;
  layer.metrics(metrics);  // training counts (the layer's own metric store)
  const auto dropped = std::find_if(metrics.begin(), metrics.end(),
                                    [](const Metric& m) { return m.name == "moe/block_1/dropped"; });
  ASSERT_NE(dropped, metrics.end());
  EXPECT_GT(dropped->value, 0.0) << "the case must drop some choices";
}

TEST(MoeLayer, DroppedTokensGetNoOutput) {
  CpuBackend be;
  ParamStore store;
  MoeConfig m = small_moe();
  m.eval_num_selected = 1;
  MoeLayer layer(be, store, "moe", m, 8, 12, 3, 1);
  store.allocate(be);
  testing::randomize_parameters(store, 2);
  // A zero router ties every expert: each token picks expert 0, whose 4 slots
  // per group go to the first 4 tokens (stable order); the other 6 are dropped.
  be.fill(store.value(*store.find("moe/router/kernel")), 8 * 4, 0.0f);
  const int64_t images = 4, tokens = 5;
  Tensor x(be, {images * tokens, 8}), y(be, {images * tokens, 8});
  x.copy_from_host(testing::random_normal(images * tokens * 8, 1));
  layer.forward(x.data(), images, tokens, y.data(), Pass{});
  const std::vector<float> out = y.to_host();
  for (int64_t t = 0; t < images * tokens; ++t) {
    const bool kept = t % 10 < 4;
    float norm = 0;
    for (int d = 0; d < 8; ++d) norm += std::fabs(out[t * 8 + d]);
    if (kept) EXPECT_GT(norm, 0.0f) << "token " << t;
    else EXPECT_EQ(norm, 0.0f) << "dropped token " << t << " must get exactly nothing";
  }
}

TEST(MoeLayer, GroupsInSeparateCallsRouteIdentically) {
  CpuBackend be;
  ParamStore store;
  const MoeConfig m = small_moe();
  MoeLayer layer(be, store, "moe", m, 8, 12, 3, 1);
  store.allocate(be);
  testing::randomize_parameters(store, 2);
  const int64_t tokens = 5, rows = 4 * tokens;
  Tensor x(be, {rows, 8}), whole(be, {rows, 8}), parts(be, {rows, 8});
  x.copy_from_host(testing::random_normal(rows * 8, 4));
  // Training (noisy) routing: the noise must follow the image's global position.
  auto routed = [&](int64_t first_image, int64_t images, float* y) {
    layer.forward(x.data() + first_image * tokens * 8, images, tokens, y,
                  Pass{.training = true, .step = 7, .first_image = first_image, .global_images = 4});
    const Router& r = layer.router();
    return std::tuple{IntTensor::to_host_of(r.expert(), images * tokens * 2, be),
                      IntTensor::to_host_of(r.slot(), images * tokens * 2, be),
                      Tensor::to_host_of(r.gate(), images * tokens * 2, be)};
  };
  auto [e, s, g] = routed(0, 4, whole.data());
  auto [e0, s0, g0] = routed(0, 2, parts.data());
  auto [e1, s1, g1] = routed(2, 2, parts.data() + 2 * tokens * 8);
  e0.insert(e0.end(), e1.begin(), e1.end());
  s0.insert(s0.end(), s1.begin(), s1.end());
  g0.insert(g0.end(), g1.begin(), g1.end());
  EXPECT_EQ(e, e0);
  EXPECT_EQ(s, s0);
  // Gates agree to float rounding: the router's logits are one GEMM over 4
  // images here and over 2 there, and some OpenBLAS kernels (seen on an
  // AVX-512 Intel Xeon) round row blocks of other heights differently.
  ASSERT_EQ(g.size(), g0.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], g0[i], 1e-6f) << i;
  // Outputs agree to float rounding, not bit for bit: in the compact expert
  // layout a group's rows sit at offsets that depend on the whole batch, and
  // BLAS rounds edge tiles differently (about 1 ulp).
  const std::vector<float> a = whole.to_host(), b = parts.to_host();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6f * (1 + std::fabs(a[i]))) << i;
}

// Packed expert buffers (the CPU's default: each expert's kept rows first,
// its GEMMs skipping the empty rest) compute what the fixed layout computes,
// with fewer FLOPs; token and image routing, forward and backward.
TEST(MoeLayer, PackedExpertBuffersMatchTheFixedLayout) {
  for (const auto& [precision, per_image] :
       {std::pair{Precision::kFp32, false}, std::pair{Precision::kFp32, true},
        std::pair{Precision::kBf16, false}, std::pair{Precision::kBf16, true}}) {
    SCOPED_TRACE(precision == Precision::kBf16 ? "bf16" : "fp32");
    struct Result {
      std::vector<float> y, dx, grads;
      double flops = 0;
    };
    auto run = [&](bool packed) {
      CpuBackend be;
      be.set_precision(precision);
      be.set_skip_empty_slots(packed);
      Workspace ws(be);
      ParamStore store;
      MoeConfig m = small_moe();
      m.capacity_ratio = 0.75;  // some choices dropped, some slots left empty
      const int dim = 8, hidden = 12, tokens = 5;
      const int64_t images = 4, rows = images * tokens;
      std::unique_ptr<ImageRouter> images_router;
      std::unique_ptr<MoeLayer> layer;
      if (per_image) {
        images_router = std::make_unique<ImageRouter>(be, store, m, dim, 3);
        layer = std::make_unique<MoeLayer>(be, store, "moe", m, dim, hidden, 1, *images_router);
      } else {
        layer = std::make_unique<MoeLayer>(be, store, "moe", m, dim, hidden, 3, 1);
      }
      store.allocate(be);
      testing::randomize_parameters(store, 2);
      Tensor x(be, {rows, dim}), dy(be, {rows, dim}), y(be, {rows, dim}), dx(be, {rows, dim});
      x.copy_from_host(testing::random_normal(rows * dim, 5));
      dy.copy_from_host(testing::random_normal(rows * dim, 6));
      const Pass pass{.training = true, .step = 2};
      // A step on other inputs first: the rows packed buffers leave empty
      // then hold the last step's values, which nothing may read.
      Tensor x0(be, {rows, dim});
      x0.copy_from_host(testing::random_normal(rows * dim, 7));
      if (images_router) images_router->forward(x0.data(), images, tokens, pass);
      layer->forward(x0.data(), images, tokens, y.data(), pass);
      layer->backward(x0.data(), dy.data(), dx.data(), ws);
      std::vector<GemmShape> calls;
      be.log_gemms(&calls);
      if (images_router) images_router->forward(x.data(), images, tokens, pass);
      layer->forward(x.data(), images, tokens, y.data(), pass);
      store.zero_grads();
      be.zero(dx.data(), rows * dim * sizeof(float));
      layer->backward(x.data(), dy.data(), dx.data(), ws);
      be.log_gemms(nullptr);
      Result r{y.to_host(), dx.to_host(), store.grads().to_host(), 0};
      for (const GemmShape& g : calls) r.flops += 2.0 * g.m * g.n * g.k;
      return r;
    };
    const Result fixed = run(false), packed = run(true);
    // Per (source, expert) GEMMs sum in other blocks; under bf16 that can
    // move a rounding to bf16 by one unit (2^-8).
    const float tolerance = precision == Precision::kBf16 ? 1e-2f : 1e-6f;
    auto expect_near = [&](const std::vector<float>& a, const std::vector<float>& b,
                           const char* what) {
      ASSERT_EQ(a.size(), b.size()) << what;
      for (size_t i = 0; i < a.size(); ++i)
        EXPECT_NEAR(a[i], b[i], tolerance * (1 + std::fabs(a[i]))) << what << " " << i;
    };
    expect_near(fixed.y, packed.y, "y");
    expect_near(fixed.dx, packed.dx, "dx");
    expect_near(fixed.grads, packed.grads, "parameter gradients");
    EXPECT_LT(packed.flops, fixed.flops) << (per_image ? "images" : "tokens");
  }
}

ViTConfig tiny_vit() { return testing::tiny_vit(Pooling::kToken, 12); }

TEST(MoeGrad, VMoEModelEveryParameter) {
  CpuBackend be;
  ParamStore store;
  const MoeConfig m = small_moe();
  ViT model(be, store, tiny_vit(), moe_extensions(be, m, tiny_vit(), 9));
  store.allocate(be);
  testing::randomize_parameters(store, 11, 0.3f);
  testing::check_model_gradients(
      be, store, model,
      {.batch = 4, .images = testing::random_normal(4 * 128, 5), .labels = {2, 0, 1, 1},
       .pass = {.training = true, .step = 2}});
}

class ImageRouterGrad : public ::testing::TestWithParam<RouterInput> {};

TEST_P(ImageRouterGrad, MobileVMoEWithSuperclassLoss) {
  CpuBackend be;
  ParamStore store;
  MoeConfig m = small_moe();
  m.routing = Routing::kImage;
  m.router_input = GetParam();
  m.num_selected = 1;
  m.superclass_loss_weight = 0.3f;
  ViT model(be, store, tiny_vit(), moe_extensions(be, m, tiny_vit(), 9));
  store.allocate(be);
  testing::randomize_parameters(store, 12, 0.3f);
  auto* router = dynamic_cast<ImageRouter*>(model.observer());
  ASSERT_NE(router, nullptr);
  const std::vector<int32_t> superclass = {3, 0, 1, 3};
  // Routing is piecewise constant: the noise draw of step 1 puts one image's
  // two best experts within a finite-difference step of a tie (the check
  // fails there, and passes with the noise off); step 4's draw has no near-tie.
  testing::check_model_gradients(
      be, store, model,
      {.batch = 4, .images = testing::random_normal(4 * 128, 6), .labels = {2, 0, 1, 1},
       .pass = {.training = true, .step = 4},
       .before_forward = [&] { router->set_superclass(superclass.data(), 4); }});
  EXPECT_GT(router->aux_loss(), 0.0);
}
INSTANTIATE_TEST_SUITE_P(Input, ImageRouterGrad,
                         ::testing::Values(RouterInput::kMean, RouterInput::kToken),
                         [](const auto& info) {
                           return info.param == RouterInput::kMean ? "mean" : "token";
                         });

}  // namespace
}  // namespace vmoe
