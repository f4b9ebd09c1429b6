// Ridge regression for few-shot linear evaluation, solved through a symmetric
// eigendecomposition so that any number of l2 strengths costs one
// decomposition (big_vision's fewshot_lsr does the same):
//
//   n >= d:  W = (XᵀX + l2 I)⁻¹ Xᵀ Y,  XᵀX = Q diag(λ) Qᵀ  ->  W = Q diag(1/(λ+l2)) Qᵀ Xᵀ Y
//   n <  d:  W = Xᵀ (XXᵀ + l2 I)⁻¹ Y,  XXᵀ = Q diag(λ) Qᵀ  ->  W = XᵀQ diag(1/(λ+l2)) Qᵀ Y
//
// whichever Gram matrix is smaller. Double precision throughout: the few-shot
// features carry a constant column of 100, which makes the Gram matrix badly
// conditioned in float. Directions whose λ + l2 is negligible next to the
// largest λ are left out (a pseudo-inverse), so l2 = 0 gives the
// minimum-norm least-squares solution rather than infinities.
#pragma once

#include <cstdint>
#include <vector>

namespace vmoe {

class RidgeRegression {
 public:
  // x [n, d] and y [n, c], row-major.
  RidgeRegression(const std::vector<double>& x, const std::vector<double>& y, int64_t n,
                  int64_t d, int64_t c);

  // W [d, c] for this l2 strength (>= 0).
  std::vector<double> weights(double l2) const;
  // True when the d x d matrix XᵀX was decomposed (n >= d), false for XXᵀ.
  bool uses_feature_gram() const { return feature_gram_; }

 private:
  int64_t d_ = 0, c_ = 0, r_ = 0;  // r: size of the decomposed Gram matrix
  bool feature_gram_ = true;
  std::vector<double> eigenvalues_;  // [r], ascending
  std::vector<double> left_;         // [d, r]: Q, or XᵀQ
  std::vector<double> right_;        // [r, c]: QᵀXᵀY, or QᵀY
};

}  // namespace vmoe
