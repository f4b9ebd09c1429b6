// The CPU backend under bf16, the twin every GPU op is tested against: GEMMs
// round their inputs (and, writing bf16, their output) as cuBLAS does, and
// each op writes exact bf16 copies of its outputs, or the copy alone, or
// reads its inputs from bf16 copies, with the same values as from the fp32
// ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/fp32_scope.h"
#include "core/math.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

// bf16 precision: the product of the inputs rounded to bfloat16, in fp32.
TEST(CpuBackend, GemmInBf16RoundsItsInputs) {
  CpuBackend be;
  const int m = 7, n = 5, k = 9;
  const std::vector<float> a = testing::random_normal(m * k, 11),
                           b = testing::random_normal(k * n, 12);
  std::vector<float> a16(a), b16(b), want(m * n), got(m * n);
  for (float& x : a16) x = round_to_bf16(x);
  for (float& x : b16) x = round_to_bf16(x);
  be.gemm(Trans::kNo, Trans::kYes, m, n, k, 1.0f, a16.data(), k, b16.data(), k, 0.0f, want.data(),
          n);
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
  // Live rows (BatchLevel::live, packed expert buffers): zeros past them.
  const std::vector<int32_t> live = {4, 0, 6, 1, 9, 2};  // [outer][inner]
  BatchLevel packed = o;
  packed.live = live.data();
  std::fill(c16.begin(), c16.end(), uint16_t{7});
  be.gemm_batched_to_bf16(Trans::kNo, Trans::kNo, m, n, k, 1.5f, a.data(), k, b.data(), n,
                          c16.data(), ldc, packed, i);
  for (size_t x = 0; x < c.size(); ++x) {
    const int64_t row = static_cast<int64_t>(x) % c_mat / ldc, col = static_cast<int64_t>(x) % ldc;
    const int64_t entry = static_cast<int64_t>(x) / c_mat;
    if (col >= n)
      EXPECT_EQ(c16[x], 7) << "the gap at " << x;
    else if (row < live[entry])  // the product, to bf16 rounding (row blocks of another height)
      EXPECT_NEAR(from_bf16(c16[x]), c[x], std::fabs(c[x]) / 128 + 1e-6f) << "at " << x;
    else
      EXPECT_EQ(c16[x], 0) << "past live at " << x;
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
  be.gelu_backward(experts, rows, cols, nullptr, slope16.data(), res.data(), nullptr, nullptr,
                   got.data(), dbias_copy.data());
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
                   nullptr, want.data(), dbias_w.data());
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

}  // namespace
}  // namespace vmoe
