#include "core/ridge_regression.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>

#include "core/check.h"

namespace vmoe {

RidgeRegression::RidgeRegression(const std::vector<double>& x, const std::vector<double>& y,
                                 int64_t n, int64_t d, int64_t c)
    : d_(d), c_(c), feature_gram_(n >= d) {
  VMOE_ASSERT(n > 0 && d > 0 && c > 0);
  VMOE_ASSERT(static_cast<int64_t>(x.size()) == n * d && static_cast<int64_t>(y.size()) == n * c);
  const int N = static_cast<int>(n), D = static_cast<int>(d), C = static_cast<int>(c);
  r_ = feature_gram_ ? d : n;
  const int R = static_cast<int>(r_);
  // The Gram matrix (upper triangle is all dsyevd reads), then its eigenvectors in place.
  std::vector<double> q(static_cast<size_t>(r_ * r_));
  if (feature_gram_) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, D, N, 1.0, x.data(), D, 0.0, q.data(), D);
  } else {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, N, D, 1.0, x.data(), D, 0.0, q.data(), N);
  }
  eigenvalues_.resize(static_cast<size_t>(r_));
  const lapack_int info =
      LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', R, q.data(), R, eigenvalues_.data());
  VMOE_CHECK(info == 0, "few-shot ridge regression: the eigendecomposition failed (dsyevd info ",
             info, ")");
  right_.resize(static_cast<size_t>(r_ * c_));
  if (feature_gram_) {
    // right = Qᵀ (Xᵀ Y), left = Q.
    std::vector<double> xty(static_cast<size_t>(d_ * c_));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, C, N, 1.0, x.data(), D, y.data(), C,
                0.0, xty.data(), C);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, D, 1.0, q.data(), R, xty.data(), C,
                0.0, right_.data(), C);
    left_ = std::move(q);
  } else {
    // right = Qᵀ Y, left = Xᵀ Q.
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, N, 1.0, q.data(), R, y.data(), C,
                0.0, right_.data(), C);
    left_.resize(static_cast<size_t>(d_ * r_));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, R, N, 1.0, x.data(), D, q.data(), R,
                0.0, left_.data(), R);
  }
}

std::vector<double> RidgeRegression::weights(double l2) const {
  VMOE_CHECK(l2 >= 0, "the ridge l2 strength must be >= 0, got ", l2);
  const double largest = std::max(eigenvalues_.back(), 0.0) + l2;
  const double cutoff = largest * 1e-12 * static_cast<double>(r_);
  // scaled = diag(1/(λ+l2)) right, with negligible directions dropped.
  std::vector<double> scaled(right_);
  for (int64_t i = 0; i < r_; ++i) {
    const double v = eigenvalues_[static_cast<size_t>(i)] + l2;
    const double s = v > cutoff ? 1.0 / v : 0.0;
    for (int64_t j = 0; j < c_; ++j) scaled[static_cast<size_t>(i * c_ + j)] *= s;
  }
  std::vector<double> w(static_cast<size_t>(d_ * c_));
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(d_),
              static_cast<int>(c_), static_cast<int>(r_), 1.0, left_.data(),
              static_cast<int>(r_), scaled.data(), static_cast<int>(c_), 0.0, w.data(),
              static_cast<int>(c_));
  return w;
}

}  // namespace vmoe
