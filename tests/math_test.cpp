// The shared host/device arithmetic against libm in double precision, and
// the backend's forward ops against naive references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/math.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

TEST(Math, ExpFastIsWithinTwoUlp) {
  for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
    const double ref = std::exp(static_cast<double>(x));
    EXPECT_NEAR(exp_fast(x), ref, 2.5e-7 * ref) << x;
  }
  EXPECT_GT(exp_fast(-1000.0f), 0.0f);
  EXPECT_TRUE(std::isfinite(exp_fast(1000.0f)));
}

TEST(Math, NormalCdfAndGeluMatchLibm) {
  for (float x = -13.0f; x < 9.0f; x += 0.00731f) {
    // The smaller side, relatively: Phi(x) for x < 0, 1 - Phi(x) for x > 0.
    // Rounding -x^2 / 2 to float costs ~x^2 ulp in the exponent.
    const double tail = 0.5 * std::erfc(std::fabs(double{x}) / std::sqrt(2.0));
    const double got = x < 0 ? normal_cdf(x) : 1.0 - double{normal_cdf(x)};
    // For x > 0, Phi(x) itself is a float near 1: half an ulp (6e-8) on top.
    EXPECT_NEAR(got, tail, (4e-7 + 1e-7 * x * x) * tail + (x < 0 ? 0 : 6e-8)) << x;
    const double g = 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    EXPECT_NEAR(gelu(x), g, 4e-7 * std::fabs(g) + 1e-7) << x;
    const double h = 1e-3;
    const double dg = (0.5 * (x + h) * std::erfc(-(x + h) / std::sqrt(2.0)) -
                       0.5 * (x - h) * std::erfc(-(x - h) / std::sqrt(2.0))) / (2 * h);
    EXPECT_NEAR(gelu_grad(x), dg, 2e-6) << x;
  }
}

TEST(Math, NormalCdfSigmoidSoftplus) {
  for (float x = -8.0f; x < 8.0f; x += 0.011f) {
    EXPECT_NEAR(normal_cdf(x), 0.5 * std::erfc(-x / std::sqrt(2.0)), 2.5e-7);
    EXPECT_NEAR(sigmoid(x), 1.0 / (1.0 + std::exp(-double{x})), 1e-7);
    EXPECT_NEAR(softplus(x), std::log1p(std::exp(double{x})), 1e-6);
  }
}

TEST(Math, AdamMatchesTheTextbookFormula) {
  const AdamParams a{0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f - 0.9f, 1.0f - 0.999f};
  float p = 2.0f, m = 0.0f, v = 0.0f;
  adam_update(a, 0.5f, p, m, v);
  // t = 1: mhat = g, vhat = g^2: step = g/|g| = 1; p -= lr * (1 + wd * p)
  EXPECT_NEAR(p, 2.0f - 0.1f * (1.0f + 0.01f * 2.0f), 1e-6);
  EXPECT_NEAR(m, 0.05f, 1e-7);
  EXPECT_NEAR(v, 0.00025f, 1e-8);
}

TEST(Math, SgdMomentum) {
  const SgdParams s{0.1f, 0.9f, 0.0f};
  float p = 1.0f, buf = 0.0f;
  sgd_update(s, 1.0f, p, buf);
  sgd_update(s, 1.0f, p, buf);
  EXPECT_NEAR(buf, 1.9f, 1e-6);
  EXPECT_NEAR(p, 1.0f - 0.1f - 0.19f, 1e-6);
}

TEST(Math, TanhGradFromItsOutput) {
  for (float x : {-2.0f, -0.3f, 0.0f, 0.7f, 3.0f}) {
    const float y = std::tanh(x);
    EXPECT_NEAR(tanh_grad(y), 1.0 / std::pow(std::cosh(double{x}), 2), 1e-6) << x;
  }
}

TEST(Math, Bfloat16RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(to_bf16(1.0f + 1.0f / 256), 0x3F80);      // half an ulp: ties to even (down)
  EXPECT_EQ(to_bf16(1.0f + 3.0f / 256), 0x3F82);      // half an ulp above odd: up
  EXPECT_EQ(to_bf16(1.0f + 1.0f / 256 + 1e-6f), 0x3F81);  // just above half: up
  EXPECT_EQ(to_bf16(3.4028235e38f), 0x7F80);          // FLT_MAX rounds to infinity
  EXPECT_TRUE(std::isnan(from_bf16(to_bf16(std::nanf("")))));
  EXPECT_EQ(from_bf16(0x3F81), 1.0f + 1.0f / 128);
  for (float x : {0.1f, -3.7f, 1e-20f, 12345.678f})
    EXPECT_LE(std::fabs(round_to_bf16(x) - x), std::fabs(x) / 256) << x;  // half an ulp
}

// ---- CPU backend forward ops against naive loops ---------------------------

TEST(CpuBackend, GemmAllTransposesAndBatches) {
  CpuBackend be;
  const int m = 5, n = 4, k = 3;
  const std::vector<float> a = testing::random_normal(2 * 3 * m * k, 1);
  const std::vector<float> b = testing::random_normal(2 * 3 * k * n, 2);
  for (Trans ta : {Trans::kNo, Trans::kYes}) {
    for (Trans tb : {Trans::kNo, Trans::kYes}) {
      std::vector<float> c(2 * 3 * m * n, 1.0f);
      const int lda = ta == Trans::kNo ? k : m, ldb = tb == Trans::kNo ? n : k;
      be.gemm_batched(ta, tb, m, n, k, 2.0f, a.data(), lda, b.data(), ldb, 0.5f, c.data(), n,
                      {2, 3 * m * k, 3 * k * n, 3 * m * n}, {3, m * k, k * n, m * n});
      for (int bat = 0; bat < 6; ++bat) {
        const float* A = a.data() + bat * m * k;
        const float* B = b.data() + bat * k * n;
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) {
            double s = 0;
            for (int p = 0; p < k; ++p) {
              const float av = ta == Trans::kNo ? A[i * k + p] : A[p * m + i];
              const float bv = tb == Trans::kNo ? B[p * n + j] : B[j * k + p];
              s += double{av} * bv;
            }
            EXPECT_NEAR(c[bat * m * n + i * n + j], 2.0 * s + 0.5, 1e-5);
          }
      }
    }
  }
}

// bf16 precision: the product of the inputs rounded to bfloat16, in fp32.
TEST(CpuBackend, GemmInBf16RoundsItsInputs) {
  CpuBackend be;
  const int m = 7, n = 5, k = 9;
  const std::vector<float> a = testing::random_normal(m * k, 11), b = testing::random_normal(k * n, 12);
  std::vector<float> a16(a), b16(b), want(m * n), got(m * n);
  for (float& x : a16) x = round_to_bf16(x);
  for (float& x : b16) x = round_to_bf16(x);
  be.gemm(Trans::kNo, Trans::kYes, m, n, k, 1.0f, a16.data(), k, b16.data(), k, 0.0f,
          want.data(), n);
  be.set_precision(Precision::kBf16);
  be.gemm(Trans::kNo, Trans::kYes, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, got.data(), n);
  EXPECT_EQ(got, want);
  {
    const Fp32Scope fp32(be);
    be.gemm(Trans::kNo, Trans::kYes, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, got.data(), n);
    EXPECT_NE(got, want);  // exact inputs inside the scope
  }
  EXPECT_EQ(be.precision(), Precision::kBf16);
  std::vector<uint16_t> h(a.size());
  std::vector<float> back(a.size());
  be.to_bf16(static_cast<int64_t>(a.size()), a.data(), h.data());
  be.from_bf16(static_cast<int64_t>(a.size()), h.data(), back.data());
  EXPECT_EQ(back, a16);
}

// A GEMM writing bf16 (fc1's output under bf16): the fp32 GEMM's values
// rounded, for every matrix of both batch levels; the gaps of ldc untouched.
TEST(CpuBackend, GemmToBf16RoundsTheFp32Product) {
  CpuBackend be;
  be.set_precision(Precision::kBf16);
  const int m = 6, n = 5, k = 8, ldc = 7, outer = 2, inner = 3;
  const int64_t c_mat = int64_t{m} * ldc;
  const std::vector<float> a = testing::random_normal(outer * inner * m * k, 13),
                           b = testing::random_normal(inner * k * n, 14);
  const BatchLevel o{outer, inner * m * k, 0, inner * c_mat}, i{inner, m * k, k * n, c_mat};
  std::vector<float> c(outer * inner * c_mat, 0.0f);
  be.gemm_batched(Trans::kNo, Trans::kNo, m, n, k, 1.5f, a.data(), k, b.data(), n, 0.0f, c.data(),
                  ldc, o, i);
  std::vector<uint16_t> c16(c.size(), 7);
  be.gemm_batched_to_bf16(Trans::kNo, Trans::kNo, m, n, k, 1.5f, a.data(), k, b.data(), n,
                          c16.data(), ldc, o, i);
  for (size_t x = 0; x < c.size(); ++x) {
    if (static_cast<int64_t>(x % ldc) < n)
      EXPECT_EQ(c16[x], to_bf16(c[x])) << "at " << x;
    else
      EXPECT_EQ(c16[x], 7) << "the gap at " << x;
  }
  // Rows enough for the emulation's blocks of rows (4 MiB of fp32 each), A
  // plain and transposed.
  const int rows = 300, cols = 4096, depth = 4;
  const std::vector<float> ab = testing::random_normal(rows * depth, 15),
                           bb = testing::random_normal(depth * cols, 16);
  for (const Trans ta : {Trans::kNo, Trans::kYes}) {
    const int lda = ta == Trans::kNo ? depth : rows;
    std::vector<float> full(rows * cols);
    std::vector<uint16_t> full16(rows * cols);
    be.gemm(ta, Trans::kNo, rows, cols, depth, 1.0f, ab.data(), lda, bb.data(), cols, 0.0f,
            full.data(), cols);
    be.gemm_batched_to_bf16(ta, Trans::kNo, rows, cols, depth, 1.0f, ab.data(), lda, bb.data(),
                            cols, full16.data(), cols, {}, {});
    for (size_t x = 0; x < full.size(); ++x)
      ASSERT_EQ(full16[x], to_bf16(full[x])) << (ta == Trans::kNo ? "A" : "A^T") << " at " << x;
  }
}

TEST(CpuBackend, LayerNormAndSoftmax) {
  CpuBackend be;
  const int rows = 3, cols = 7;
  const std::vector<float> x = testing::random_normal(rows * cols, 4, 3.0f);
  const std::vector<float> g = testing::random_normal(cols, 5), bt = testing::random_normal(cols, 6);
  std::vector<float> y(rows * cols), mean(rows), rstd(rows);
  be.layernorm_forward(rows, cols, 1e-6f, x.data(), g.data(), bt.data(), y.data(), mean.data(),
                       rstd.data());
  std::vector<float> p = x;
  be.softmax_forward(rows, cols, 0.5f, p.data());
  for (int r = 0; r < rows; ++r) {
    double mu = 0, var = 0, mx = -1e30, z = 0;
    for (int c = 0; c < cols; ++c) mu += x[r * cols + c] / double(cols);
    for (int c = 0; c < cols; ++c) var += std::pow(x[r * cols + c] - mu, 2) / cols;
    for (int c = 0; c < cols; ++c) {
      const double want = (x[r * cols + c] - mu) / std::sqrt(var + 1e-6) * g[c] + bt[c];
      EXPECT_NEAR(y[r * cols + c], want, 1e-5);
      mx = std::max(mx, double{x[r * cols + c]});
    }
    for (int c = 0; c < cols; ++c) z += std::exp(0.5 * (x[r * cols + c] - mx));
    for (int c = 0; c < cols; ++c)
      EXPECT_NEAR(p[r * cols + c], std::exp(0.5 * (x[r * cols + c] - mx)) / z, 1e-6);
  }
}

// The fused residual add + LayerNorm is the add then the norm, bit for bit;
// ops asked for a bf16 copy write exactly bfloat16 of their output.
TEST(CpuBackend, AddLayerNormAndBf16Copies) {
  CpuBackend be;
  const int rows = 5, cols = 37;
  const int64_t n = rows * cols;
  const std::vector<float> x0 = testing::random_normal(n, 21, 3.0f);
  const std::vector<float> res = testing::random_normal(n, 22);
  const std::vector<float> gamma = testing::random_normal(cols, 23);
  const std::vector<float> beta = testing::random_normal(cols, 24);
  std::vector<float> xa(x0), xb(x0), ya(n), yb(n), ma(rows), mb(rows), ra(rows), rb(rows);
  std::vector<uint16_t> y16(n);
  be.axpy(n, 1.0f, res.data(), xa.data());
  be.layernorm_forward(rows, cols, 1e-6f, xa.data(), gamma.data(), beta.data(), ya.data(),
                       ma.data(), ra.data());
  be.add_layernorm_forward(rows, cols, 1e-6f, res.data(), xb.data(), gamma.data(), beta.data(),
                           yb.data(), y16.data(), mb.data(), rb.data());
  EXPECT_EQ(xa, xb);
  EXPECT_EQ(ya, yb);
  EXPECT_EQ(ma, mb);
  EXPECT_EQ(ra, rb);
  auto expect_copy = [](const char* what, const std::vector<float>& y,
                        const std::vector<uint16_t>& copy) {
    for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(copy[i], to_bf16(y[i])) << what << " " << i;
  };
  expect_copy("add_layernorm_forward", yb, y16);
  std::vector<float> a(x0), g(n);
  be.bias_gelu(rows, cols, beta.data(), a.data(), g.data(), y16.data());
  expect_copy("bias_gelu", g, y16);
  std::vector<float> p(x0);
  be.softmax_forward(rows, cols, 0.5f, p.data(), y16.data());
  expect_copy("softmax_forward", p, y16);
  std::vector<float> d(res);
  be.softmax_backward(rows, cols, 0.5f, p.data(), d.data(), y16.data());
  expect_copy("softmax_backward", d, y16);
  std::vector<float> w(x0), m(n, 0.0f), v(n, 0.0f);
  const UpdateScalars s = update_scalars(1e-2, 0.9f, 0.999f, 1);
  be.adam_update(n, 0.9f, 0.999f, 1e-8f, 0.0f, &s, res.data(), w.data(), y16.data(), m.data(),
                 v.data());
  expect_copy("adam_update", w, y16);
}

// Under bf16 an activation only GEMMs read is written as its copy alone
// (null fp32 output): the same copy and, for bias+GELU, the same derivative.
TEST(CpuBackend, Bf16OnlyOutputsAreTheCopiesOfTheFp32Ones) {
  CpuBackend be;
  const int experts = 2, rows = 5, cols = 37;
  const int64_t n = int64_t{experts} * rows * cols;
  const std::vector<float> x0 = testing::random_normal(n, 41, 3.0f);
  const std::vector<float> res = testing::random_normal(n, 42);
  const std::vector<float> gamma = testing::random_normal(cols, 43);
  const std::vector<float> beta = testing::random_normal(experts * cols, 44);
  std::vector<float> y(n), mean(experts * rows), rstd(experts * rows);
  std::vector<uint16_t> want(n), got(n);
  be.layernorm_forward(experts * rows, cols, 1e-6f, x0.data(), gamma.data(), beta.data(), y.data(),
                       want.data(), mean.data(), rstd.data());
  be.layernorm_forward(experts * rows, cols, 1e-6f, x0.data(), gamma.data(), beta.data(), nullptr,
                       got.data(), mean.data(), rstd.data());
  EXPECT_EQ(got, want) << "layernorm_forward";
  std::vector<float> xa(x0), xb(x0);
  be.add_layernorm_forward(experts * rows, cols, 1e-6f, res.data(), xa.data(), gamma.data(),
                           beta.data(), y.data(), want.data(), mean.data(), rstd.data());
  be.add_layernorm_forward(experts * rows, cols, 1e-6f, res.data(), xb.data(), gamma.data(),
                           beta.data(), nullptr, got.data(), mean.data(), rstd.data());
  EXPECT_EQ(got, want) << "add_layernorm_forward";
  EXPECT_EQ(xa, xb) << "add_layernorm_forward: the residual sum";
  std::vector<float> a(x0), b(x0), g(n);
  be.expert_bias_gelu(experts, rows, cols, beta.data(), a.data(), g.data(), want.data());
  be.expert_bias_gelu(experts, rows, cols, beta.data(), b.data(), nullptr, got.data());
  EXPECT_EQ(got, want) << "expert_bias_gelu";
  EXPECT_EQ(a, b) << "expert_bias_gelu: the derivative";
  const std::vector<uint16_t> want_gelu = want;
  // The GELU's backward, with the bias gradient taken in its pass: the same
  // copy, and the bias gradient of the finished fp32 output, bit for bit.
  std::vector<float> da(n), dbias_full(experts * cols, 0.25f), dbias_only(dbias_full);
  std::vector<float> dbias_after(dbias_full);
  be.gelu_backward(experts, rows, cols, a.data(), res.data(), da.data(), want.data(),
                   dbias_full.data());
  be.gelu_backward(experts, rows, cols, a.data(), res.data(), nullptr, got.data(),
                   dbias_only.data());
  EXPECT_EQ(got, want) << "gelu_backward";
  EXPECT_EQ(dbias_only, dbias_full) << "gelu_backward: the bias gradient";
  be.expert_bias_grad(experts, rows, cols, da.data(), dbias_after.data());
  EXPECT_EQ(dbias_full, dbias_after) << "gelu_backward: the bias gradient of its output";
  // The slope kept as bf16 (the MLPs under bf16): the same GELU output, the
  // slope's copy, the pre-activation left as it was; backward from that copy
  // = backward from its widened values.
  std::vector<float> c(x0);
  std::vector<uint16_t> slope16(n), g16(n);
  be.expert_bias_gelu(experts, rows, cols, beta.data(), c.data(), nullptr, nullptr, g16.data(),
                      slope16.data());
  EXPECT_EQ(g16, want_gelu) << "expert_bias_gelu with the slope's copy";
  EXPECT_EQ(c, x0) << "expert_bias_gelu with the slope's copy: the input is only read";
  // The input as bf16 (fc1's output under bf16) = its widened values.
  std::vector<uint16_t> x16(n), g16_in16(n), slope16_in16(n), g16_widened(n), slope16_widened(n);
  std::vector<float> x_widened(n);
  for (int64_t i = 0; i < n; ++i) {
    x16[i] = to_bf16(x0[i]);
    x_widened[i] = from_bf16(x16[i]);
  }
  be.expert_bias_gelu(experts, rows, cols, beta.data(), x_widened.data(), nullptr, nullptr,
                      g16_widened.data(), slope16_widened.data());
  be.expert_bias_gelu(experts, rows, cols, beta.data(), nullptr, x16.data(), nullptr,
                      g16_in16.data(), slope16_in16.data());
  EXPECT_EQ(g16_in16, g16_widened) << "expert_bias_gelu from a bf16 input";
  EXPECT_EQ(slope16_in16, slope16_widened) << "expert_bias_gelu from a bf16 input: the slope";
  std::vector<float> slope(n);
  for (int64_t i = 0; i < n; ++i) {
    slope[i] = from_bf16(slope16[i]);
    EXPECT_EQ(slope16[i], to_bf16(a[i])) << "the slope's copy at " << i;
  }
  std::vector<float> dbias_widened(experts * cols, 0.25f), dbias_copy(dbias_widened);
  be.gelu_backward(experts, rows, cols, slope.data(), res.data(), nullptr, want.data(),
                   dbias_widened.data());
  be.gelu_backward(experts, rows, cols, nullptr, slope16.data(), res.data(), nullptr, got.data(),
                   dbias_copy.data());
  EXPECT_EQ(got, want) << "gelu_backward from the slope's copy";
  EXPECT_EQ(dbias_copy, dbias_widened) << "gelu_backward from the slope's copy: the bias gradient";
  // dg as bf16 (fc2's input gradient under bf16), overwritten by da's copy
  // in place = from its widened values.
  std::vector<uint16_t> dg16(n);
  std::vector<float> dg_widened(n);
  for (int64_t i = 0; i < n; ++i) {
    dg16[i] = to_bf16(res[i]);
    dg_widened[i] = from_bf16(dg16[i]);
  }
  std::vector<float> dbias_in16(experts * cols, 0.25f), dbias_w(dbias_in16);
  be.gelu_backward(experts, rows, cols, nullptr, slope16.data(), dg_widened.data(), nullptr,
                   want.data(), dbias_w.data());
  be.gelu_backward(experts, rows, cols, nullptr, slope16.data(), nullptr, dg16.data(), nullptr,
                   dg16.data(), dbias_in16.data());
  EXPECT_EQ(dg16, want) << "gelu_backward from a bf16 dg, in place";
  EXPECT_EQ(dbias_in16, dbias_w) << "gelu_backward from a bf16 dg: the bias gradient";
  // The softmax's backward over padded rows (the attention's): from dp into
  // a separate output, and as its copy alone, the gap zeros included.
  const int srows = 6, scols = 11, ld = 16;
  std::vector<float> p(x0.begin(), x0.begin() + srows * ld),
      dp(res.begin(), res.begin() + srows * ld);
  // The probabilities as their copy alone (the attention's under bf16): the
  // scores only read, the copy that of the in-place result, gaps included.
  const std::vector<float> scores = p;
  std::vector<uint16_t> p_want(srows * ld), p_got(srows * ld, 1);
  be.softmax_forward(srows, scols, ld, 0.5f, p.data(), p_want.data());
  std::vector<float> scores_read = scores;
  be.softmax_forward(srows, scols, ld, 0.5f, scores_read.data(), nullptr, p_got.data());
  EXPECT_EQ(p_got, p_want) << "softmax_forward, bf16 only";
  EXPECT_EQ(scores_read, scores) << "softmax_forward, bf16 only: the scores only read";
  std::vector<float> copy_into(srows * ld);
  std::copy(scores.begin(), scores.end(), copy_into.begin());
  be.softmax_forward(srows, scols, ld, 0.5f, scores_read.data(), copy_into.data(), nullptr);
  EXPECT_EQ(copy_into, p) << "softmax_forward into another buffer";
  // The backward from that copy = from its widened values.
  std::vector<float> p_widened(srows * ld);
  for (int i = 0; i < srows * ld; ++i) p_widened[i] = from_bf16(p_got[i]);
  std::vector<uint16_t> from_widened(srows * ld), from_copy(srows * ld, 1);
  std::vector<float> d_widened(srows * ld), d_copy(srows * ld);
  be.softmax_backward(srows, scols, ld, 0.5f, p_widened.data(), dp.data(), d_widened.data(),
                      from_widened.data());
  be.softmax_backward(srows, scols, ld, 0.5f, nullptr, p_got.data(), dp.data(), d_copy.data(),
                      from_copy.data());
  EXPECT_EQ(d_copy, d_widened) << "softmax_backward from the probabilities' copy";
  EXPECT_EQ(from_copy, from_widened) << "softmax_backward from the probabilities' copy: its copy";
  be.softmax_backward(srows, scols, ld, 0.5f, nullptr, p_got.data(), dp.data(), nullptr,
                      from_copy.data());
  EXPECT_EQ(from_copy, from_widened) << "softmax_backward from the probabilities' copy, bf16 only";
  std::vector<float> d_in_place(dp), d_out(srows * ld);
  std::vector<uint16_t> s_want(srows * ld), s_got(srows * ld, 1);
  be.softmax_backward(srows, scols, ld, 0.5f, p.data(), d_in_place.data(), d_in_place.data(),
                      s_want.data());
  be.softmax_backward(srows, scols, ld, 0.5f, p.data(), dp.data(), d_out.data(), nullptr);
  EXPECT_EQ(d_out, d_in_place) << "softmax_backward into another buffer";
  be.softmax_backward(srows, scols, ld, 0.5f, p.data(), dp.data(), nullptr, s_got.data());
  EXPECT_EQ(s_got, s_want) << "softmax_backward, bf16 only";
}

// Packing heads with the projection's bias fused is packing the biased rows;
// the padding rows stay zero; the bf16-only form writes the same copy.
TEST(CpuBackend, PackHeadsWithTheBias) {
  CpuBackend be;
  const int64_t images = 2;
  const int tokens = 5, padded = 8, heads = 3, head_dim = 4, slabs = 3;
  const int64_t width = int64_t{slabs} * heads * head_dim, rows = images * tokens;
  const int64_t packed = slabs * images * heads * padded * head_dim;
  std::vector<float> x = testing::random_normal(rows * width, 51);
  const std::vector<float> bias = testing::random_normal(width, 52);
  std::vector<float> want(packed), got(packed);
  std::vector<uint16_t> want16(packed), got16(packed);
  std::vector<float> biased_x(x);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < width; ++c) biased_x[r * width + c] += bias[c];
  be.pack_heads(images, tokens, padded, heads, head_dim, slabs, biased_x.data(), nullptr,
                want.data(), want16.data());
  be.pack_heads(images, tokens, padded, heads, head_dim, slabs, x.data(), bias.data(), got.data(),
                got16.data());
  EXPECT_EQ(got, want);
  EXPECT_EQ(got16, want16);
  std::fill(got16.begin(), got16.end(), uint16_t{1});
  be.pack_heads(images, tokens, padded, heads, head_dim, slabs, x.data(), bias.data(), nullptr,
                got16.data());
  EXPECT_EQ(got16, want16) << "bf16 only";
  EXPECT_EQ(want[(int64_t{padded} - 1) * head_dim], 0.0f) << "a padding row";
  // Unpacking takes the bias gradient of the rows it writes: bias_grad's bits.
  std::vector<float> back(rows * width), dbias(width, 0.5f), dbias_want(width, 0.5f);
  std::vector<float> dbias_only(width, 0.5f);
  std::vector<uint16_t> back16(rows * width), only16(rows * width, 1);
  be.unpack_heads(images, tokens, padded, heads, head_dim, slabs, got.data(), back.data(),
                  back16.data(), dbias.data());
  EXPECT_EQ(back, biased_x) << "unpack(pack(x + bias))";
  be.bias_grad(rows, static_cast<int>(width), back.data(), dbias_want.data());
  EXPECT_EQ(dbias, dbias_want) << "unpack_heads: the bias gradient";
  be.unpack_heads(images, tokens, padded, heads, head_dim, slabs, got.data(), nullptr,
                  only16.data(), dbias_only.data());
  EXPECT_EQ(only16, back16) << "unpack_heads, bf16 only";
  EXPECT_EQ(dbias_only, dbias_want) << "unpack_heads, bf16 only: the bias gradient";
}

// The experts' bias ops over [experts, rows, cols] are the dense ops with
// expert e's bias row on expert e's rows.
TEST(CpuBackend, ExpertBiasOpsAreThePerExpertOps) {
  CpuBackend be;
  const int experts = 3, rows = 7, cols = 13;
  const int64_t n = int64_t{experts} * rows * cols;
  const std::vector<float> bias = testing::random_normal(experts * cols, 31);
  const std::vector<float> x = testing::random_normal(n, 32);
  std::vector<float> a(x), b(x), ga(n), gb(n), da(experts * cols, 0.5f), db(da);
  std::vector<uint16_t> g16(n);
  be.expert_bias_gelu(experts, rows, cols, bias.data(), a.data(), ga.data(), g16.data());
  be.expert_add_bias(experts, rows, cols, bias.data(), a.data());
  be.expert_bias_grad(experts, rows, cols, a.data(), da.data());
  for (int e = 0; e < experts; ++e) {
    const int64_t at = int64_t{e} * rows * cols;
    be.bias_gelu(rows, cols, bias.data() + e * cols, b.data() + at, gb.data() + at);
    be.add_bias(rows, cols, bias.data() + e * cols, b.data() + at);
    be.bias_grad(rows, cols, b.data() + at, db.data() + e * cols);
  }
  EXPECT_EQ(a, b);
  EXPECT_EQ(ga, gb);
  EXPECT_EQ(da, db);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(g16[i], to_bf16(ga[i])) << i;
}

TEST(CpuBackend, PatchifyOrder) {
  CpuBackend be;
  // one 4x4 image with 2 channels, patch 2: pixel value encodes (y, x, c)
  std::vector<float> img(4 * 4 * 2);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 2; ++c) img[(y * 4 + x) * 2 + c] = 100 * y + 10 * x + c;
  std::vector<float> patches(4 * 8);
  be.patchify(1, 4, 4, 2, 2, img.data(), patches.data());
  // patch (py=1, px=0) is the third; its vector is (dy, dx, c) ordered
  const std::vector<float> want = {200, 201, 210, 211, 300, 301, 310, 311};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(patches[2 * 8 + i], want[i]);
}

TEST(CpuBackend, CrossEntropyValues) {
  CpuBackend be;
  const std::vector<float> z = {1.0f, 2.0f, 3.0f};
  const int32_t label = 1;
  const float w = 1.0f;
  float loss, dz[3];
  be.softmax_cross_entropy(1, 3, z.data(), &label, &w, 1.0f, &loss, dz);
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(loss, lse - 2.0, 1e-6);
  const std::vector<float> y = {0.0f, 1.0f, 1.0f};
  be.sigmoid_cross_entropy(1, 3, z.data(), y.data(), &w, 1.0f, &loss, dz);
  const double want = std::log1p(std::exp(1.0)) + std::log1p(std::exp(-2.0)) + std::log1p(std::exp(-3.0));
  EXPECT_NEAR(loss, want, 1e-6);
}

// A batch's inputs on the CPU backend: pixels scaled exactly as the loader
// scales them, and mixup of row pairs as datasets' mix_images.
TEST(CpuOps, UploadPixelsAndMixPairs) {
  CpuBackend be;
  std::vector<uint8_t> pixels(512);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i % 256);
  std::vector<float> x(pixels.size());
  const HostTraffic before = be.traffic();
  be.upload_pixels(static_cast<int64_t>(pixels.size()), pixels.data(), x.data());
  EXPECT_EQ(be.traffic().to_device - before.to_device, 1);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], static_cast<float>(pixels[i]) / 127.5f - 1.0f);
  EXPECT_EQ(x[0], -1.0f);
  EXPECT_EQ(x[255], 1.0f);
  std::vector<float> mixed = x;
  be.mix_pairs(2, 128, 0.25f, mixed.data());
  for (int p = 0; p < 2; ++p) {
    for (int i = 0; i < 128; ++i) {
      const float a = x[(2 * p) * 128 + i], b = x[(2 * p + 1) * 128 + i];
      EXPECT_EQ(mixed[(2 * p) * 128 + i], 0.25f * a + 0.75f * b);
      EXPECT_EQ(mixed[(2 * p + 1) * 128 + i], 0.25f * b + 0.75f * a);
    }
  }
}

}  // namespace
}  // namespace vmoe
