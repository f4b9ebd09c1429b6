// The few-shot ridge solver against closed-form answers: both Gram branches,
// with and without regularisation.
#include "core/ridge_regression.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/random.h"

namespace vmoe {
namespace {

std::vector<double> random_matrix(int64_t rows, int64_t cols, uint64_t stream) {
  std::vector<double> m(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < m.size(); ++i)
    m[i] = normal_at(7, static_cast<uint64_t>(Stream::kTest) * 100 + stream, i);
  return m;
}

// a [r, k] times b [k, c], naive.
std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b, int64_t r,
                           int64_t k, int64_t c) {
  std::vector<double> out(static_cast<size_t>(r * c), 0.0);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j)
      for (int64_t p = 0; p < k; ++p) out[i * c + j] += a[i * k + p] * b[p * c + j];
  return out;
}

std::vector<double> transpose(const std::vector<double>& a, int64_t r, int64_t c) {
  std::vector<double> out(a.size());
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) out[j * r + i] = a[i * c + j];
  return out;
}

// (XᵀX + l2 I) W == XᵀY: the normal equations every ridge solution satisfies.
void expect_normal_equations(const std::vector<double>& x, const std::vector<double>& y,
                             const std::vector<double>& w, int64_t n, int64_t d, int64_t c,
                             double l2) {
  const std::vector<double> xt = transpose(x, n, d);
  std::vector<double> lhs = matmul(matmul(xt, x, d, n, d), w, d, d, c);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < c; ++j) lhs[i * c + j] += l2 * w[i * c + j];
  const std::vector<double> rhs = matmul(xt, y, d, n, c);
  for (size_t i = 0; i < rhs.size(); ++i) EXPECT_NEAR(lhs[i], rhs[i], 1e-9 * (1 + std::abs(rhs[i])));
}

TEST(RidgeRegression, OneFeatureByHand) {
  // x = (1, 2, 3), y = (1, 2, 2): w = xᵀy / (xᵀx + l2) = 11 / (14 + l2).
  const RidgeRegression r({1, 2, 3}, {1, 2, 2}, 3, 1, 1);
  EXPECT_TRUE(r.uses_feature_gram());
  EXPECT_NEAR(r.weights(0)[0], 11.0 / 14.0, 1e-14);
  EXPECT_NEAR(r.weights(6)[0], 11.0 / 20.0, 1e-14);
}

TEST(RidgeRegression, OnePointByHand) {
  // One example x = (1, 2), y = 3 (d > n: the XXᵀ branch). l2 = 0 gives the
  // minimum-norm interpolant x·3/|x|² = (0.6, 1.2); l2 gives x·3/(|x|² + l2).
  const RidgeRegression r({1, 2}, {3}, 1, 2, 1);
  EXPECT_FALSE(r.uses_feature_gram());
  const std::vector<double> w0 = r.weights(0), w5 = r.weights(5);
  EXPECT_NEAR(w0[0], 0.6, 1e-14);
  EXPECT_NEAR(w0[1], 1.2, 1e-14);
  EXPECT_NEAR(w5[0], 0.3, 1e-14);
  EXPECT_NEAR(w5[1], 0.6, 1e-14);
}

TEST(RidgeRegression, FeatureGramBranchSolvesTheNormalEquations) {
  const int64_t n = 12, d = 5, c = 3;
  const std::vector<double> x = random_matrix(n, d, 1), y = random_matrix(n, c, 2);
  const RidgeRegression r(x, y, n, d, c);
  ASSERT_TRUE(r.uses_feature_gram());
  for (double l2 : {0.0, 0.5, 1024.0}) expect_normal_equations(x, y, r.weights(l2), n, d, c, l2);
}

TEST(RidgeRegression, SampleGramBranchMatchesTheClosedForm) {
  const int64_t n = 4, d = 9, c = 2;
  const std::vector<double> x = random_matrix(n, d, 3), y = random_matrix(n, c, 4);
  const RidgeRegression r(x, y, n, d, c);
  ASSERT_FALSE(r.uses_feature_gram());
  for (double l2 : {0.5, 1024.0}) expect_normal_equations(x, y, r.weights(l2), n, d, c, l2);
  // l2 = 0: the minimum-norm interpolant, X W = Y with W = Xᵀ A in X's row space.
  const std::vector<double> w = r.weights(0);
  const std::vector<double> fit = matmul(x, w, n, d, c);
  for (size_t i = 0; i < fit.size(); ++i) EXPECT_NEAR(fit[i], y[i], 1e-9);
  // Row space: W's columns are orthogonal to X's null space, i.e. W = Xᵀ(XXᵀ)⁻¹XW.
  const std::vector<double> xt = transpose(x, n, d);
  const RidgeRegression projector(xt, w, d, n, c);  // least squares of W on Xᵀ (d >= n)
  const std::vector<double> a = projector.weights(0);
  const std::vector<double> back = matmul(xt, a, d, n, c);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(back[i], w[i], 1e-9);
}

}  // namespace
}  // namespace vmoe
