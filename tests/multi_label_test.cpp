// Multi-label (multi-hot, sigmoid cross-entropy) training against hand
// computations: ClassificationLoss's sum and dlogits with a padding row and at
// extreme logits, precision@1 (count_correct_at_1) on multi-hot labels, and a
// multi-label ViT's loss at initialisation (head kernel 0, bias -10).
//
// Already covered elsewhere and not repeated here: the backend's softmax and
// sigmoid loss values on one unmasked row (math_test.cpp CrossEntropyValues),
// finite-difference dlogits of both losses with a masked row
// (layer_grad_test.cpp LossGrad), the head bias values and the single-label
// initial loss ln 4 (model_test.cpp), single-label ClassificationLoss against
// PyTorch (reference_test.cpp).
//
// Reference values are double literals, each also recomputed from its formula
// (softplus(z) - y z = -y log s(z) - (1 - y) log(1 - s(z))) to catch typos.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/loss.h"
#include "core/vit.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

double softplus_ref(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }
double sigmoid_ref(double z) { return 1.0 / (1.0 + std::exp(-z)); }
// One class's sigmoid cross-entropy, in double.
double bce_ref(double z, double y) { return softplus_ref(z) - y * z; }

constexpr double kLn2 = 0.6931471805599453;
constexpr double kSoftplusMinus10 = 4.539889921686465e-05;  // ln(1 + e^-10)
constexpr double kSigmoidMinus10 = 4.5397868702434395e-05;  // 1 / (1 + e^10)

TEST(MultiLabelLoss, LiteralsMatchTheirFormulas) {
  EXPECT_DOUBLE_EQ(kLn2, std::log(2.0));
  EXPECT_DOUBLE_EQ(kSoftplusMinus10, std::log1p(std::exp(-10.0)));
  EXPECT_DOUBLE_EQ(kSigmoidMinus10, sigmoid_ref(-10.0));
  EXPECT_DOUBLE_EQ(bce_ref(0.0, 1.0), kLn2);
  EXPECT_DOUBLE_EQ(bce_ref(0.0, 0.0), kLn2);
}

// Three rows of four classes; row 2 is padding (mask 0) with large logits
// and a label, so any leak would show.
//   row 0: z = 0 everywhere, y = {1,0,0,1}: every class costs ln 2.
//   row 1: z = {2, -1, 0.5, -3}, y = {0,1,1,0}:
//          softplus(2)          = ln(1+e^2)       = 2.1269280110429727
//          softplus(-1) + 1     = ln(1+e^-1) + 1  = 1.3132616875182229
//          softplus(0.5) - 0.5  = ln(1+e^-0.5)    = 0.4740769841801067
//          softplus(-3)         = ln(1+e^-3)      = 0.04858735157374206
TEST(MultiLabelLoss, SumAndGradientByHandWithPaddingRow) {
  CpuBackend be;
  const int rows = 3, classes = 4;
  const std::vector<float> z = {0, 0, 0, 0,  2, -1, 0.5f, -3,  30, -30, 7, 1};
  const std::vector<uint8_t> hot = {1, 0, 0, 1,  0, 1, 1, 0,  0, 1, 0, 1};
  const std::vector<uint8_t> mask = {1, 1, 0};

  const double row0 = 4 * kLn2;
  const double row1_terms[4] = {2.1269280110429727, 1.3132616875182229, 0.4740769841801067,
                                0.04858735157374206};
  const double row1 = row1_terms[0] + row1_terms[1] + row1_terms[2] + row1_terms[3];
  for (int c = 0; c < classes; ++c)
    EXPECT_NEAR(row1_terms[c], bce_ref(z[4 + c], hot[4 + c]), 1e-15) << "literal " << c;
  EXPECT_NEAR(row0 + row1, 6.735442756554825, 1e-14);

  ClassificationLoss loss(be, classes, /*multi_label=*/true);
  Tensor zd(be, {rows * classes}), dz(be, {rows * classes});
  zd.copy_from_host(z);
  be.fill(dz.data(), rows * classes, 123.0f);  // every entry must be written
  const float grad_scale = 0.25f;
  const LossTargets t{rows, nullptr, hot.data(), mask.data()};
  const double sum = loss.forward_backward(zd.data(), t, grad_scale, dz.data());
  EXPECT_NEAR(sum, 6.735442756554825, 2e-6);

  // dlogits = grad_scale * (sigmoid(z) - y) on real rows, 0 on padding.
  const std::vector<float> grad = dz.to_host();
  const double want[rows * classes] = {
      0.25 * (0.5 - 1), 0.25 * 0.5, 0.25 * 0.5, 0.25 * (0.5 - 1),  // exact in float
      0.25 * 0.8807970779778823, 0.25 * (0.2689414213699951 - 1),
      0.25 * (0.6224593312018546 - 1), 0.25 * 0.04742587317756678,
      0, 0, 0, 0};
  for (int i = 0; i < rows * classes; ++i) {
    if (i < 2 * classes) {
      EXPECT_NEAR(want[i], grad_scale * (sigmoid_ref(z[i]) - hot[i]), 1e-15) << "literal " << i;
    }
    EXPECT_NEAR(grad[i], want[i], 1e-7) << "dlogits[" << i << "]";
  }
  for (int c = 0; c < classes; ++c) EXPECT_EQ(grad[c], want[c]) << "sigmoid(0) is exact";
  for (int c = 0; c < classes; ++c) EXPECT_EQ(grad[2 * classes + c], 0.0f) << "padding row";

  // Evaluation's forward() is the same sum; without a mask the padding row counts:
  // 30 -> softplus(30) = 30 + ln(1+e^-30), -30 with y = 1 -> 30 + ln(1+e^-30),
  // 7 -> softplus(7), 1 with y = 1 -> ln(1+e^-1).
  EXPECT_EQ(loss.forward(zd.data(), t), sum);
  const double row2 = bce_ref(30, 0) + bce_ref(-30, 1) + bce_ref(7, 0) + bce_ref(1, 1);
  EXPECT_NEAR(row2, 60 + 2 * std::exp(-30.0) + 7.000911466453775 + 0.31326168751822286, 1e-12);
  const LossTargets unmasked{rows, nullptr, hot.data(), nullptr};
  EXPECT_NEAR(loss.forward(zd.data(), unmasked), row0 + row1 + row2, 3e-5);  // float ulp at 67: 7.6e-6
}

// Saturated logits: the per-class terms are ~0 or ~|z|, never inf or NaN.
//   z = -10 everywhere, y = {0,1,0}: 10 + 3 ln(1+e^-10) = 10.000136196697651
//   (the positive class pays 10 + ln(1+e^-10), each negative ln(1+e^-10)).
//   z = {-100, 100}, y = {1, 0}: 100 + 100 (e^-100 is below float resolution).
TEST(MultiLabelLoss, ExtremeLogits) {
  CpuBackend be;
  {
    ClassificationLoss loss(be, 3, true);
    const std::vector<float> z = {-10, -10, -10};
    const std::vector<uint8_t> hot = {0, 1, 0};
    Tensor zd(be, {3}), dz(be, {3});
    zd.copy_from_host(z);
    const double sum = loss.forward_backward(zd.data(), {1, nullptr, hot.data(), nullptr}, 1.0f,
                                             dz.data());
    EXPECT_NEAR(10 + 3 * kSoftplusMinus10, 10.000136196697651, 1e-14);
    EXPECT_NEAR(sum, 10.000136196697651, 2e-6);  // float ulp at 10 is 9.5e-7
    const std::vector<float> g = dz.to_host();
    EXPECT_NEAR(g[0], kSigmoidMinus10, 1e-11);
    EXPECT_NEAR(g[1], kSigmoidMinus10 - 1, 1e-7);
    EXPECT_NEAR(g[2], kSigmoidMinus10, 1e-11);
  }
  {
    ClassificationLoss loss(be, 2, true);
    const std::vector<float> z = {-100, 100};
    const std::vector<uint8_t> hot = {1, 0};
    Tensor zd(be, {2}), dz(be, {2});
    zd.copy_from_host(z);
    const double sum = loss.forward_backward(zd.data(), {1, nullptr, hot.data(), nullptr}, 0.5f,
                                             dz.data());
    EXPECT_NEAR(sum, 200.0, 2e-5);
    const std::vector<float> g = dz.to_host();
    EXPECT_NEAR(g[0], -0.5, 1e-7);
    EXPECT_NEAR(g[1], 0.5, 1e-7);
  }
}

// precision@1 on multi-hot labels: a row counts when its top-scoring class is
// one of its labels. Ties: the prediction is the lowest index among the tied
// top classes (strict '>' scan), so a label on a later tied class does not
// count. A real row without labels never counts.
TEST(MultiLabelPrecision, TopClassAmongLabels) {
  const int classes = 4;
  const std::vector<float> z = {
      0.1f, 2.0f, 0.3f, -1.0f,  // 0: top 1, labels {1, 3}        -> counts
      5.0f, 1.0f, 4.0f, 0.0f,   // 1: top 0, labels {1, 2}        -> no (2nd best is a label)
      0.0f, 0.0f, 9.0f, 0.0f,   // 2: top 2, labelled, padding    -> no (mask 0)
      1.0f, 3.0f, 3.0f, 0.0f,   // 3: tie 1 = 2, label {1}        -> counts (prediction 1)
      1.0f, 3.0f, 3.0f, 0.0f,   // 4: tie 1 = 2, label {2}        -> no (prediction 1)
      7.0f, 7.0f, 7.0f, 7.0f,   // 5: all equal, label {0}        -> counts (prediction 0)
      1.0f, 0.0f, 0.0f, 0.0f};  // 6: no labels at all            -> no
  const std::vector<uint8_t> hot = {0, 1, 0, 1,  0, 1, 1, 0,  0, 0, 1, 0,  0, 1, 0, 0,
                                    0, 0, 1, 0,  1, 0, 0, 0,  0, 0, 0, 0};
  const std::vector<uint8_t> mask = {1, 1, 0, 1, 1, 1, 1};
  const int64_t rows = 7;
  EXPECT_EQ(count_correct_at_1(z.data(), classes, {rows, nullptr, hot.data(), mask.data()}), 3);
  // Without a mask the padding row is an ordinary row and counts.
  EXPECT_EQ(count_correct_at_1(z.data(), classes, {rows, nullptr, hot.data(), nullptr}), 4);
  // Row by row, to pin each case.
  const int want[rows] = {1, 0, 1, 1, 0, 1, 0};
  for (int64_t r = 0; r < rows; ++r)
    EXPECT_EQ(count_correct_at_1(z.data() + r * classes, classes,
                                 {1, nullptr, hot.data() + r * classes, nullptr}),
              want[r])
        << "row " << r;
}

// A multi-label ViT at initialisation: the head kernel is 0 and its bias -10,
// so every logit is exactly -10 whatever the image, and an image with P_i of
// its K labels set costs K ln(1+e^-10) + 10 P_i (a positive class pays
// 10 + ln(1+e^-10), a negative only ln(1+e^-10) = 4.54e-5). The loss per
// image is therefore ~10 x (labels per image), not K x 10: the -10 bias makes
// the K - P_i negatives nearly free, which is the point of it.
TEST(MultiLabelModel, InitialLossFromTheMinusTenHead) {
  CpuBackend be;
  ParamStore store;
  ViTConfig c = testing::tiny_vit();
  c.num_classes = 10;
  c.multi_label = true;
  ViT model(be, store, c);
  store.allocate(be);
  store.initialize(5);
  const int K = c.num_classes;
  const int64_t batch = 4;
  // Labels per image: 1, 2, 0, all 10.
  std::vector<uint8_t> hot(batch * K, 0);
  hot[0 * K + 3] = 1;
  hot[1 * K + 0] = hot[1 * K + 9] = 1;
  for (int k = 0; k < K; ++k) hot[3 * K + k] = 1;
  const int labels_per_image[batch] = {1, 2, 0, 10};

  Tensor x(be, {batch * 8 * 8 * 2}), dlogits(be, {batch * K});
  x.copy_from_host(testing::random_normal(batch * 8 * 8 * 2, 17));
  model.forward(x.data(), batch, Pass{.training = true});
  std::vector<float> logits(batch * K);
  be.copy_to_host(logits.data(), model.logits(), logits.size() * sizeof(float));
  for (float l : logits) ASSERT_EQ(l, -10.0f) << "zero kernel: logits are the bias";

  ClassificationLoss loss(be, K, true);
  const float grad_scale = 1.0f / batch;
  const double sum = loss.forward_backward(model.logits(), {batch, nullptr, hot.data(), nullptr},
                                           grad_scale, dlogits.data());
  // Expected sum: 4 K ln(1+e^-10) + 10 (1 + 2 + 0 + 10) = 130.00181595596868.
  double want = 0;
  for (int64_t i = 0; i < batch; ++i) want += K * kSoftplusMinus10 + 10.0 * labels_per_image[i];
  EXPECT_NEAR(want, 130.00181595596868, 1e-12);
  EXPECT_NEAR(sum, want, 3e-5);  // float row sums, each within ~1 ulp(100) = 7.6e-6
  // Per image: the all-positive image costs K (10 + ln(1+e^-10)) = 100.000454, the
  // unlabelled one K ln(1+e^-10) = 4.54e-4.
  for (int64_t i = 0; i < batch; ++i) {
    const double one = loss.forward(model.logits() + i * K, {1, nullptr, hot.data() + i * K, nullptr});
    // The backend sums a row's K terms in float: ulp(100) = 7.6e-6.
    EXPECT_NEAR(one, K * kSoftplusMinus10 + 10.0 * labels_per_image[i], 1e-5) << "image " << i;
  }
  EXPECT_NEAR(K * (10 + kSoftplusMinus10), 100.00045398899218, 1e-12);
  // dlogits = (sigmoid(-10) - y) / batch.
  const std::vector<float> g = dlogits.to_host();
  for (int64_t i = 0; i < batch * K; ++i)
    EXPECT_NEAR(g[i], grad_scale * (kSigmoidMinus10 - hot[i]), 1e-8) << i;
}

}  // namespace
}  // namespace vmoe
