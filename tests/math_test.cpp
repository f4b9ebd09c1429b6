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
  const float lr = 0.1f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
  float p = 2.0f, m = 0.0f, v = 0.0f;
  adam_update(adam_params(update_scalars(lr, b1, b2, 1), b1, b2, eps, wd), 0.5f, p, m, v);
  // t = 1: mhat = g, vhat = g^2: step = g/|g| = 1; p -= lr * (1 + wd * p)
  EXPECT_NEAR(p, 2.0f - 0.1f * (1.0f + 0.01f * 2.0f), 1e-6);
  EXPECT_NEAR(m, 0.05f, 1e-7);
  EXPECT_NEAR(v, 0.00025f, 1e-8);
  // Three more steps against the formula in double.
  double pd = p, md = m, vd = v;
  const float grads[] = {-0.3f, 0.02f, 1.5f};
  for (int t = 2; t <= 4; ++t) {
    const double g = grads[t - 2];
    adam_update(adam_params(update_scalars(lr, b1, b2, t), b1, b2, eps, wd), grads[t - 2], p, m, v);
    md = b1 * md + (1 - b1) * g;
    vd = b2 * vd + (1 - b2) * g * g;
    const double step = md / (1 - std::pow(b1, t)) / (std::sqrt(vd / (1 - std::pow(b2, t))) + eps);
    pd -= lr * (step + wd * pd);
    EXPECT_NEAR(p, pd, 1e-6) << t;
    EXPECT_NEAR(m, md, 1e-7) << t;
    EXPECT_NEAR(v, vd, 1e-8) << t;
  }
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
  EXPECT_EQ(to_bf16(std::nanf("")), 0x7fff);          // the GPU's cvt: the quiet NaN 0x7fff
  EXPECT_EQ(to_bf16(-std::nanf("")), 0x7fff);
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

// BatchLevel::live: entry i's rows past live[i] are skipped; C's rows there
// become beta * C (m), or the terms there are left out (k).
TEST(CpuBackend, GemmSkipsRowsPastLive) {
  CpuBackend be;
  const int m = 6, n = 4, k = 5;
  const std::vector<float> a = testing::random_normal(3 * m * k, 1);
  const std::vector<float> b = testing::random_normal(3 * k * n, 2);
  const std::vector<int32_t> live = {0, 2, 9};  // empty, partial, past the end
  auto product = [&](int bat, int i, int j, int terms) {
    double s = 0;
    for (int p = 0; p < terms; ++p)
      s += double{a[bat * m * k + i * k + p]} * b[bat * k * n + p * n + j];
    return s;
  };
  for (float beta : {0.0f, 0.5f}) {
    // Along m: A [m, k] per entry.
    std::vector<float> c(3 * m * n, std::nanf(""));
    if (beta != 0.0f) std::fill(c.begin(), c.end(), 1.0f);
    be.gemm_batched(Trans::kNo, Trans::kNo, m, n, k, 2.0f, a.data(), k, b.data(), n, beta, c.data(),
                    n, {.count = 3, .a = m * k, .b = k * n, .c = m * n, .live = live.data()}, {});
    for (int bat = 0; bat < 3; ++bat)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          const double want = (i < live[bat] ? 2.0 * product(bat, i, j, k) : 0.0) + beta;
          EXPECT_NEAR(c[(bat * m + i) * n + j], want, 1e-5) << beta << " m " << bat << " " << i;
        }
    // Along k: the terms past live[i] are left out.
    std::fill(c.begin(), c.end(), beta != 0.0f ? 1.0f : std::nanf(""));
    be.gemm_batched(Trans::kNo, Trans::kNo, m, n, k, 2.0f, a.data(), k, b.data(), n, beta, c.data(),
                    n,
                    {.count = 3,
                     .a = m * k,
                     .b = k * n,
                     .c = m * n,
                     .live = live.data(),
                     .live_axis = LiveAxis::kK},
                    {});
    for (int bat = 0; bat < 3; ++bat)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          const double want = 2.0 * product(bat, i, j, std::min(k, live[bat])) + beta;
          EXPECT_NEAR(c[(bat * m + i) * n + j], want, 1e-5) << beta << " k " << bat << " " << i;
        }
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

// Rows of up to 32 go through the CPU's tiles 16 at a time (attention's short
// rows), the rest row by row: each row gets the same bits either way, and
// both are the softmax and its gradient.
TEST(CpuBackend, SoftmaxTilesGiveEachRowsBits) {
  CpuBackend be;
  const int rows = 37;  // two tiles and 5 rows past them
  for (const int cols : {1, 8, 16, 17, 32, 33}) {
    SCOPED_TRACE(cols);
    const int ld = cols + 3;  // the gaps come out zero
    const std::vector<float> x = testing::random_normal(rows * ld, cols, 3.0f);
    const std::vector<float> dp = testing::random_normal(rows * ld, cols + 100);
    std::vector<float> p = x, p_rows = x;
    be.softmax_forward(rows, cols, ld, 0.5f, p.data(), nullptr);
    for (int r = 0; r < rows; ++r)
      be.softmax_forward(1, cols, ld, 0.5f, p_rows.data() + r * ld, nullptr);
    EXPECT_EQ(p, p_rows);
    std::vector<float> d(rows * ld), d_rows(rows * ld);
    be.softmax_backward(rows, cols, ld, 0.5f, p.data(), nullptr, dp.data(), d.data(), nullptr);
    for (int r = 0; r < rows; ++r)
      be.softmax_backward(1, cols, ld, 0.5f, p.data() + r * ld, nullptr, dp.data() + r * ld,
                          d_rows.data() + r * ld, nullptr);
    EXPECT_EQ(d, d_rows);
    for (int r = 0; r < rows; ++r) {
      const float* xr = x.data() + r * ld;
      double mx = -1e30, z = 0, dot = 0;
      for (int c = 0; c < cols; ++c) mx = std::max(mx, double{xr[c]});
      for (int c = 0; c < cols; ++c) z += std::exp(0.5 * (xr[c] - mx));
      for (int c = 0; c < cols; ++c) dot += p[r * ld + c] * double{dp[r * ld + c]};
      for (int c = 0; c < cols; ++c) {
        EXPECT_NEAR(p[r * ld + c], std::exp(0.5 * (xr[c] - mx)) / z, 1e-6);
        EXPECT_NEAR(d[r * ld + c], 0.5 * p[r * ld + c] * (dp[r * ld + c] - dot), 1e-5);
      }
      for (int c = cols; c < ld; ++c) EXPECT_EQ(p[r * ld + c], 0.0f);
      for (int c = cols; c < ld; ++c) EXPECT_EQ(d[r * ld + c], 0.0f);
    }
  }
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
