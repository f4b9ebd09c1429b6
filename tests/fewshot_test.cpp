// Few-shot linear evaluation: example selection, and the classifier against
// an independent textbook implementation (normal equations, Gaussian
// elimination).
#include "launch/fewshot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/random.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

std::vector<int32_t> cyclic_labels(int64_t n, int64_t classes) {
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>((i * 7 + i / 3) % classes);
  return labels;
}

TEST(FewShot, RowsAreTheFirstShotsOfEachClassInTheSeededOrder) {
  const int64_t n = 500, classes = 4;
  const std::vector<int32_t> labels = cyclic_labels(n, classes);
  const std::vector<int64_t> rows = fewshot_rows(labels, classes, 5, 3);
  ASSERT_EQ(rows.size(), 20u);
  const RandomPermutation perm(n, 3, static_cast<uint64_t>(Stream::kFewShot));
  for (int64_t c = 0; c < classes; ++c) {
    // Walk the permutation: the class's first five examples, in order.
    std::vector<int64_t> expected;
    for (int64_t i = 0; i < n && expected.size() < 5; ++i)
      if (labels[perm(i)] == c) expected.push_back(static_cast<int64_t>(perm(i)));
    EXPECT_EQ(std::vector<int64_t>(rows.begin() + c * 5, rows.begin() + (c + 1) * 5), expected);
  }
  // Deterministic, seed-dependent, and a 2-shot set is each block's prefix.
  EXPECT_EQ(fewshot_rows(labels, classes, 5, 3), rows);
  EXPECT_NE(fewshot_rows(labels, classes, 5, 4), rows);
  const std::vector<int64_t> two = fewshot_rows(labels, classes, 2, 3);
  for (int64_t c = 0; c < classes; ++c) {
    EXPECT_EQ(two[c * 2], rows[c * 5]);
    EXPECT_EQ(two[c * 2 + 1], rows[c * 5 + 1]);
  }
}

TEST(FewShot, TooFewExamplesNamesTheClass) {
  std::vector<int32_t> labels = {0, 1, 0, 1, 2, 0, 1};
  EXPECT_EQ(testing::error_of([&] { fewshot_rows(labels, 3, 2, 0); }),
            "few-shot: class 2 has only 1 training examples, fewer than 2 shots");
}

TEST(FewShot, ParsesShotsAndL2) {
  EXPECT_EQ(parse_shots("1,5,10,25", "s"), (std::vector<int>{1, 5, 10, 25}));
  EXPECT_EQ(parse_l2("1024", "l"), std::vector<double>{1024});
  const std::vector<double> sweep = parse_l2("sweep", "l");
  ASSERT_EQ(sweep.size(), 30u);
  EXPECT_EQ(sweep.front(), std::ldexp(1.0, -10));
  EXPECT_EQ(sweep.back(), std::ldexp(1.0, 19));
  EXPECT_EQ(testing::error_of([] { parse_shots("1,x", "fewshot_shots"); }),
            "--fewshot_shots='1,x': expected positive integers, found 'x'");
  EXPECT_EQ(testing::error_of([] { parse_l2("-1", "fewshot_l2"); }),
            "--fewshot_l2='-1': expected numbers >= 0 or 'sweep', found '-1'");
}

// The textbook few-shot classifier: standardise, bias column of 100,
// solve (XᵀX + l2 I) W = XᵀY by Gaussian elimination, arg-max.
double reference_accuracy(const std::vector<float>& tx, const std::vector<int32_t>& ty,
                          const std::vector<float>& vx, const std::vector<int32_t>& vy, int d,
                          int classes, double l2) {
  const size_t n = ty.size(), m = vy.size();
  std::vector<double> mean(d, 0), sd(d, 0);
  for (size_t i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) mean[j] += tx[i * d + j] / static_cast<double>(n);
  for (size_t i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) sd[j] += std::pow(tx[i * d + j] - mean[j], 2) / static_cast<double>(n);
  for (double& s : sd) s = std::sqrt(s) + 1e-5;
  const int D = d + 1;
  auto row = [&](const std::vector<float>& x, size_t i) {
    std::vector<double> r(D);
    for (int j = 0; j < d; ++j) r[j] = (x[i * d + j] - mean[j]) / sd[j];
    r[d] = 100;
    return r;
  };
  // Augmented system [XᵀX + l2 I | XᵀY].
  std::vector<std::vector<double>> a(D, std::vector<double>(D + classes, 0));
  for (size_t i = 0; i < n; ++i) {
    const std::vector<double> r = row(tx, i);
    for (int p = 0; p < D; ++p) {
      for (int q = 0; q < D; ++q) a[p][q] += r[p] * r[q];
      for (int c = 0; c < classes; ++c) a[p][D + c] += r[p] * (ty[i] == c ? 1.0 : -1.0);
    }
  }
  for (int p = 0; p < D; ++p) a[p][p] += l2;
  for (int p = 0; p < D; ++p) {
    int pivot = p;
    for (int q = p + 1; q < D; ++q) pivot = std::abs(a[q][p]) > std::abs(a[pivot][p]) ? q : pivot;
    std::swap(a[p], a[pivot]);
    for (int q = 0; q < D; ++q) {
      if (q == p) continue;
      const double f = a[q][p] / a[p][p];
      for (int k = p; k < D + classes; ++k) a[q][k] -= f * a[p][k];
    }
  }
  int hits = 0;
  for (size_t i = 0; i < m; ++i) {
    const std::vector<double> r = row(vx, i);
    int best = 0;
    double best_score = -1e300;
    for (int c = 0; c < classes; ++c) {
      double s = 0;
      for (int p = 0; p < D; ++p) s += r[p] * a[p][D + c] / a[p][p];
      if (s > best_score) best_score = s, best = c;
    }
    hits += best == vy[i];
  }
  return static_cast<double>(hits) / static_cast<double>(m);
}

// Features whose mean depends on the class, plus noise: separable but not trivially.
void make_features(int64_t n, int d, int classes, uint64_t stream, std::vector<float>& x,
                   std::vector<int32_t>& y) {
  x.resize(static_cast<size_t>(n * d));
  y.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<int32_t>(i % classes);
    for (int j = 0; j < d; ++j) {
      const float signal = ((j + y[i]) % classes == 0) ? 3.0f : 0.0f;
      x[i * d + j] = signal + 1.5f * normal_at(11, stream, static_cast<uint64_t>(i * d + j)) + 3.0f * j;
    }
  }
}

TEST(FewShot, AccuracyMatchesTheTextbookSolution) {
  const int d = 6, classes = 3;
  std::vector<float> vx;
  std::vector<int32_t> vy;
  make_features(300, d, classes, 2, vx, vy);
  for (int64_t n : {3, 30}) {  // n < d + 1 (XXᵀ) and n > d + 1 (XᵀX)
    std::vector<float> tx;
    std::vector<int32_t> ty;
    make_features(n, d, classes, 1, tx, ty);
    const std::vector<double> l2 = {0.25, 1024};
    const std::vector<double> acc = fewshot_accuracy(tx, ty, vx, vy, d, classes, l2);
    ASSERT_EQ(acc.size(), 2u);
    for (size_t i = 0; i < l2.size(); ++i) {
      SCOPED_TRACE("n = " + std::to_string(n) + ", l2 = " + std::to_string(l2[i]));
      EXPECT_DOUBLE_EQ(acc[i], reference_accuracy(tx, ty, vx, vy, d, classes, l2[i]));
      EXPECT_GT(acc[i], 1.0 / classes);  // better than chance
    }
  }
}

}  // namespace
}  // namespace vmoe
