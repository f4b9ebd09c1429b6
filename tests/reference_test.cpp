// Our ViT against PyTorch's: the same weights (tests/reference/vit_reference.bin,
// written by make_vit_reference.py) must give PyTorch's logits, loss and
// every parameter gradient. Gradient checks prove backward matches our
// forward; this proves our forward is the standard ViT.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "core/cpu/cpu_backend.h"
#include "core/loss.h"
#include "core/vit.h"

namespace vmoe {
namespace {

using Records = std::map<std::string, std::vector<float>>;

Records read_reference() {
  const std::string path = std::string(VMOE_SOURCE_DIR) + "/tests/reference/vit_reference.bin";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  Records out;
  int32_t len = 0;
  while (in.read(reinterpret_cast<char*>(&len), 4)) {
    std::string name(static_cast<size_t>(len), '\0');
    in.read(name.data(), len);
    int32_t ndim = 0;
    in.read(reinterpret_cast<char*>(&ndim), 4);
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) {
      int64_t d = 0;
      in.read(reinterpret_cast<char*>(&d), 8);
      n *= d;
    }
    std::vector<float> data(static_cast<size_t>(n));
    in.read(reinterpret_cast<char*>(data.data()), n * 4);
    out[name] = std::move(data);
  }
  return out;
}

class Reference : public ::testing::TestWithParam<Pooling> {};

TEST_P(Reference, LogitsLossAndGradientsMatchPyTorch) {
  const Records ref = read_reference();
  ASSERT_FALSE(ref.empty());
  const std::string prefix = GetParam() == Pooling::kToken ? "token/" : "gap/";
  ViTConfig c;
  c.image = {8, 8, 2};
  c.patch_size = 4;
  c.hidden_size = 12;
  c.num_layers = 2;
  c.num_heads = 3;
  c.mlp_dim = 20;
  c.num_classes = 5;
  c.classifier = GetParam();
  CpuBackend be;
  ParamStore store;
  ViT model(be, store, c);
  store.allocate(be);
  for (ParamId id = 0; id < store.count(); ++id) {
    const std::string name = store.spec(id).name;
    ASSERT_TRUE(ref.count(prefix + "param/" + name)) << "no reference for " << name;
    const std::vector<float>& v = ref.at(prefix + "param/" + name);
    ASSERT_EQ(static_cast<int64_t>(v.size()), store.numel(id)) << name;
    be.copy_to_device(store.value(id), v.data(), v.size() * sizeof(float));
  }
  const std::vector<float>& images = ref.at("input/images");
  std::vector<int32_t> labels;
  for (float y : ref.at("input/labels")) labels.push_back(static_cast<int32_t>(y));
  const int64_t batch = static_cast<int64_t>(labels.size());
  Tensor x(be, {static_cast<int64_t>(images.size())}), dlogits(be, {batch * 5});
  x.copy_from_host(images);
  model.forward(x.data(), batch, Pass{.training = true});
  std::vector<float> logits(batch * 5);
  be.copy_to_host(logits.data(), model.logits(), logits.size() * sizeof(float));
  const std::vector<float>& want = ref.at(prefix + "logits");
  for (size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(logits[i], want[i], 2e-5) << i;

  ClassificationLoss loss(be, 5, false);
  store.zero_grads();
  const double l = loss.forward_backward(model.logits(), {batch, labels.data(), nullptr, nullptr},
                                         1.0f / batch, dlogits.data()) / batch;
  EXPECT_NEAR(l, ref.at(prefix + "loss")[0], 2e-6);
  model.backward(dlogits.data());
  for (ParamId id = 0; id < store.count(); ++id) {
    const std::string name = store.spec(id).name;
    const std::vector<float>& g = ref.at(prefix + "grad/" + name);
    std::vector<float> ours(g.size());
    be.copy_to_host(ours.data(), store.grad(id), ours.size() * sizeof(float));
    double max_ref = 0;
    for (float v : g) max_ref = std::max(max_ref, std::fabs(double{v}));
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_NEAR(ours[i], g[i], 1e-5 + 1e-4 * max_ref) << name << "[" << i << "]";
  }
}
INSTANTIATE_TEST_SUITE_P(Pooling, Reference, ::testing::Values(Pooling::kToken, Pooling::kGap),
                         [](const auto& info) { return std::string(pooling_name(info.param)); });

}  // namespace
}  // namespace vmoe
