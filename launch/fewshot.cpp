#include "launch/fewshot.h"

#include <cblas.h>

#include <cmath>
#include <cstdlib>

#include "core/check.h"
#include "core/random.h"
#include "core/ridge_regression.h"
#include "launch/flag_lists.h"

namespace vmoe {
namespace {

constexpr double kBiasFeature = 100.0;  // big_vision's BIAS_CONSTANT
constexpr double kStdEpsilon = 1e-5;

// Standardised features with the bias column: [rows, dim + 1].
std::vector<double> design_matrix(const std::vector<float>& x, int64_t rows, int64_t dim,
                                  const std::vector<double>& mean, const std::vector<double>& std) {
  std::vector<double> out(static_cast<size_t>(rows * (dim + 1)));
  for (int64_t i = 0; i < rows; ++i) {
    double* o = out.data() + i * (dim + 1);
    const float* v = x.data() + i * dim;
    for (int64_t j = 0; j < dim; ++j) o[j] = (v[j] - mean[static_cast<size_t>(j)]) / std[static_cast<size_t>(j)];
    o[dim] = kBiasFeature;
  }
  return out;
}

}  // namespace

std::vector<int> parse_shots(const std::string& text, const char* flag) {
  std::vector<int> out;
  for (const std::string& item : split_commas(text)) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    VMOE_CHECK(!item.empty() && end == item.c_str() + item.size() && v > 0 && v < (1 << 20),
               "--", flag, "='", text, "': expected positive integers, found '", item, "'");
    out.push_back(static_cast<int>(v));
  }
  VMOE_CHECK(!out.empty(), "--", flag, " is empty");
  return out;
}

std::vector<double> parse_l2(const std::string& text, const char* flag) {
  std::vector<double> out;
  if (text == "sweep") {
    for (int i = -10; i <= 19; ++i) out.push_back(std::ldexp(1.0, i));
    return out;
  }
  for (const std::string& item : split_commas(text)) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    VMOE_CHECK(!item.empty() && end == item.c_str() + item.size() && v >= 0 && std::isfinite(v),
               "--", flag, "='", text, "': expected numbers >= 0 or 'sweep', found '", item, "'");
    out.push_back(v);
  }
  VMOE_CHECK(!out.empty(), "--", flag, " is empty");
  return out;
}

std::vector<int64_t> fewshot_rows(const std::vector<int32_t>& labels, int64_t classes, int shots,
                                  uint64_t seed) {
  const int64_t n = static_cast<int64_t>(labels.size());
  std::vector<std::vector<int64_t>> per_class(static_cast<size_t>(classes));
  int64_t complete = 0;
  const RandomPermutation permutation(static_cast<uint64_t>(n), seed,
                                      static_cast<uint64_t>(Stream::kFewShot));
  for (int64_t i = 0; i < n && complete < classes; ++i) {
    const int64_t row = static_cast<int64_t>(permutation(static_cast<uint64_t>(i)));
    const int32_t c = labels[static_cast<size_t>(row)];
    VMOE_ASSERT(c >= 0 && c < classes);
    std::vector<int64_t>& rows = per_class[static_cast<size_t>(c)];
    if (static_cast<int>(rows.size()) < shots) {
      rows.push_back(row);
      if (static_cast<int>(rows.size()) == shots) ++complete;
    }
  }
  std::vector<int64_t> out;
  for (int64_t c = 0; c < classes; ++c) {
    const std::vector<int64_t>& rows = per_class[static_cast<size_t>(c)];
    VMOE_CHECK(static_cast<int>(rows.size()) == shots, "few-shot: class ", c, " has only ",
               rows.size(), " training examples, fewer than ", shots, " shots");
    out.insert(out.end(), rows.begin(), rows.end());
  }
  return out;
}

std::vector<double> fewshot_accuracy(const std::vector<float>& train_x,
                                     const std::vector<int32_t>& train_y,
                                     const std::vector<float>& test_x,
                                     const std::vector<int32_t>& test_y, int64_t dim,
                                     int64_t classes, const std::vector<double>& l2) {
  const int64_t n = static_cast<int64_t>(train_y.size());
  const int64_t m = static_cast<int64_t>(test_y.size());
  VMOE_ASSERT(n > 0 && m > 0 && dim > 0);
  VMOE_ASSERT(static_cast<int64_t>(train_x.size()) == n * dim &&
              static_cast<int64_t>(test_x.size()) == m * dim);
  // Mean and (population) std of the few-shot set, per feature.
  std::vector<double> mean(static_cast<size_t>(dim), 0.0), std(static_cast<size_t>(dim), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < dim; ++j) mean[static_cast<size_t>(j)] += train_x[static_cast<size_t>(i * dim + j)];
  for (double& v : mean) v /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < dim; ++j) {
      const double d = train_x[static_cast<size_t>(i * dim + j)] - mean[static_cast<size_t>(j)];
      std[static_cast<size_t>(j)] += d * d;
    }
  }
  for (double& v : std) v = std::sqrt(v / static_cast<double>(n)) + kStdEpsilon;

  const std::vector<double> x = design_matrix(train_x, n, dim, mean, std);
  std::vector<double> y(static_cast<size_t>(n * classes), -1.0);
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i * classes + train_y[static_cast<size_t>(i)])] = 1.0;
  const RidgeRegression ridge(x, y, n, dim + 1, classes);

  const std::vector<double> test = design_matrix(test_x, m, dim, mean, std);
  std::vector<double> scores(static_cast<size_t>(m * classes));
  std::vector<double> accuracy;
  for (double strength : l2) {
    const std::vector<double> w = ridge.weights(strength);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m),
                static_cast<int>(classes), static_cast<int>(dim + 1), 1.0, test.data(),
                static_cast<int>(dim + 1), w.data(), static_cast<int>(classes), 0.0,
                scores.data(), static_cast<int>(classes));
    int64_t hits = 0;
    for (int64_t i = 0; i < m; ++i) {
      const double* s = scores.data() + i * classes;
      int64_t best = 0;
      for (int64_t c = 1; c < classes; ++c) best = s[c] > s[best] ? c : best;
      hits += best == test_y[static_cast<size_t>(i)];
    }
    accuracy.push_back(static_cast<double>(hits) / static_cast<double>(m));
  }
  return accuracy;
}

}  // namespace vmoe
