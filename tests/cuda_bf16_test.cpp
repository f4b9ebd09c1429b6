// Mixed precision on the GPU against the CPU: bf16 GEMMs, conversions, and
// the bf16 copies GEMM inputs carry (core/backend.h GemmInput): a GEMM given
// a copy computes the same bits as one converting the fp32 values, and every
// op that writes a copy beside its fp32 output writes exactly bfloat16 of it.
// Without a GPU every test skips, saying why.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/math.h"
#include "tests/cuda_ops_fixture.h"

namespace vmoe {
namespace {

using testing::CudaOps;
using testing::host_bf16;

// Mixed precision: both backends multiply the same bfloat16-rounded inputs
// in fp32, so only the summation order differs (bound: normalised MSE 1e-6).
TEST_F(CudaOps, Bf16GemmAndConversions) {
  const int m = 64, n = 48, k = 96;
  cpu_.set_precision(Precision::kBf16);
  gpu_->set_precision(Precision::kBf16);
  Both<float> a = random(m * k, 70), b = random(k * n, 71), c = random(m * n, 72);
  cpu_.gemm(Trans::kNo, Trans::kYes, m, n, k, 1.0f, a.cpu.data(), k, b.cpu.data(), k, 0.5f,
            c.cpu.data(), n);
  gpu_->gemm(Trans::kNo, Trans::kYes, m, n, k, 1.0f, a.gpu, k, b.gpu, k, 0.5f, c.gpu, n);
  expect_close("bf16 gemm", c, 1e-6);
  Both<float> ba = random(6 * m * k, 73), bb = random(6 * k * n, 74), bc = random(6 * m * n, 75);
  const BatchLevel o{2, 3 * m * k, 3 * k * n, 3 * m * n}, i{3, m * k, k * n, m * n};
  cpu_.gemm_batched(Trans::kYes, Trans::kNo, m, n, k, 0.5f, ba.cpu.data(), m, bb.cpu.data(), n,
                    0.0f, bc.cpu.data(), n, o, i);
  gpu_->gemm_batched(Trans::kYes, Trans::kNo, m, n, k, 0.5f, ba.gpu, m, bb.gpu, n, 0.0f, bc.gpu, n,
                     o, i);
  expect_close("bf16 gemm_batched", bc, 1e-6);
  // Attention's shape: Q Kᵀ per (image, head) over strided views of one QKV
  // buffer [images, T, 3D] (both levels strided, the smaller one looped).
  const int images = 3, T = 17, heads = 4, hd = 8, D = heads * hd;
  Both<float> qkv = random(images * T * 3 * D, 76), s = random(images * heads * T * T, 77);
  const BatchLevel per_image{images, T * 3 * D, T * 3 * D, heads * T * T};
  const BatchLevel per_head{heads, hd, hd, T * T};
  cpu_.gemm_batched(Trans::kNo, Trans::kYes, T, T, hd, 0.125f, qkv.cpu.data(), 3 * D,
                    qkv.cpu.data() + D, 3 * D, 0.0f, s.cpu.data(), T, per_image, per_head);
  gpu_->gemm_batched(Trans::kNo, Trans::kYes, T, T, hd, 0.125f, qkv.gpu, 3 * D, qkv.gpu + D, 3 * D,
                     0.0f, s.gpu, T, per_image, per_head);
  expect_close("bf16 gemm_batched (attention views)", s, 1e-6);
  Both<uint16_t> h = both(std::vector<uint16_t>(a.cpu.size()));
  cpu_.to_bf16(static_cast<int64_t>(a.cpu.size()), a.cpu.data(), h.cpu.data());
  gpu_->to_bf16(static_cast<int64_t>(a.cpu.size()), a.gpu, h.gpu);
  expect_equal("to_bf16", h);
  Both<float> back = both(std::vector<float>(a.cpu.size()));
  cpu_.from_bf16(static_cast<int64_t>(a.cpu.size()), h.cpu.data(), back.cpu.data());
  gpu_->from_bf16(static_cast<int64_t>(a.cpu.size()), h.gpu, back.gpu);
  expect_equal("from_bf16", back);
}

TEST_F(CudaOps, GemmsUseTheBf16CopiesTheyAreGiven) {
  gpu_->set_precision(Precision::kBf16);
  const int images = 3, T = 17, heads = 4, hd = 8, D = heads * hd;
  Both<float> qkv = random(images * T * 3 * D, 80);
  Both<uint16_t> qkv16 = both(host_bf16(qkv.cpu));
  Both<float> with = random(images * heads * T * T, 81),
              without = random(images * heads * T * T, 82);
  const BatchLevel per_image{images, T * 3 * D, T * 3 * D, heads * T * T};
  const BatchLevel per_head{heads, hd, hd, T * T};
  const GemmInput q(qkv.gpu, qkv16.gpu);
  const int64_t converted = gpu_->bf16_conversions().gemm_inputs;
  gpu_->gemm_batched(Trans::kNo, Trans::kYes, T, T, hd, 0.125f, q, 3 * D, q.offset(D), 3 * D, 0.0f,
                     with.gpu, T, per_image, per_head);
  EXPECT_EQ(gpu_->bf16_conversions().gemm_inputs, converted) << "copies given: none converted";
  gpu_->gemm_batched(Trans::kNo, Trans::kYes, T, T, hd, 0.125f, qkv.gpu, 3 * D, qkv.gpu + D, 3 * D,
                     0.0f, without.gpu, T, per_image, per_head);
  EXPECT_EQ(gpu_->bf16_conversions().gemm_inputs, converted + 2);
  EXPECT_EQ(from_gpu(with), from_gpu(without));
  // A plain GEMM with one input carrying a copy (a weight) and one not.
  const int m = 40, n = 24, k = 56;
  Both<float> a = random(m * k, 83), w = random(k * n, 84);
  Both<uint16_t> w16 = both(host_bf16(w.cpu));
  Both<float> c1 = random(m * n, 85), c2 = random(m * n, 86);
  gpu_->gemm(Trans::kNo, Trans::kNo, m, n, k, 1.0f, a.gpu, k, {w.gpu, w16.gpu}, n, 0.0f, c1.gpu, n);
  gpu_->gemm(Trans::kNo, Trans::kNo, m, n, k, 1.0f, a.gpu, k, w.gpu, n, 0.0f, c2.gpu, n);
  EXPECT_EQ(from_gpu(c1), from_gpu(c2));
}

// A GEMM writing bf16 (fc1's output under bf16), both batch levels and a
// row stride wider than the row: within one bf16 rounding step of the CPU's
// (the fp32 product rounded), the gaps untouched.
TEST_F(CudaOps, GemmToBf16) {
  gpu_->set_precision(Precision::kBf16);
  cpu_.set_precision(Precision::kBf16);
  const int m = 40, n = 24, k = 56, ldc = 28, outer = 2, inner = 3;
  const int64_t c_mat = int64_t{m} * ldc;
  Both<float> a = random(outer * inner * m * k, 120), b = random(inner * k * n, 121);
  const BatchLevel o{outer, inner * m * k, 0, inner * c_mat}, i{inner, m * k, k * n, c_mat};
  Both<uint16_t> c16 = both(std::vector<uint16_t>(outer * inner * c_mat, 7));
  cpu_.gemm_batched_to_bf16(Trans::kNo, Trans::kNo, m, n, k, 1.0f, a.cpu.data(), k, b.cpu.data(), n,
                            c16.cpu.data(), ldc, o, i);
  gpu_->gemm_batched_to_bf16(Trans::kNo, Trans::kNo, m, n, k, 1.0f, a.gpu, k, b.gpu, n, c16.gpu,
                             ldc, o, i);
  const std::vector<uint16_t> got = from_gpu(c16);
  for (size_t x = 0; x < got.size(); ++x) {
    if (static_cast<int64_t>(x % ldc) >= n) {
      ASSERT_EQ(got[x], 7) << "the gap at " << x;
      continue;
    }
    const float want = from_bf16(c16.cpu[x]);
    ASSERT_LE(std::abs(from_bf16(got[x]) - want), std::abs(want) * 1e-2f + 1e-4f) << "at " << x;
  }
}

TEST_F(CudaOps, OpsWriteExactBf16CopiesOfTheirOutputs) {
  const int rows = 37, cols = 300;
  const int64_t n = rows * cols;
  auto copy_of = [&](int64_t count) { return both(std::vector<uint16_t>(count)); };
  // Each op runs twice on the GPU from the same inputs, without and with the
  // copy: the fp32 outputs must agree bit for bit, the copy be their bf16.
  auto check = [&](const char* what, const Both<float>& out, const std::vector<float>& plain,
                   const Both<uint16_t>& copy) {
    const std::vector<float> got = from_gpu(out);
    EXPECT_EQ(got, plain) << what << ": the fp32 output changed";
    EXPECT_EQ(from_gpu(copy), host_bf16(got)) << what << ": copy";
  };
  Both<float> bias = random(cols, 90);
  {
    Both<float> y = random(n, 91);
    const std::vector<float> start = y.cpu;
    gpu_->add_bias(rows, cols, bias.gpu, y.gpu);
    const std::vector<float> plain = from_gpu(y);
    gpu_->copy_to_device(y.gpu, start.data(), n * sizeof(float));
    Both<uint16_t> y16 = copy_of(n);
    gpu_->add_bias(rows, cols, bias.gpu, y.gpu, y16.gpu);
    check("add_bias", y, plain, y16);
  }
  {
    Both<float> a = random(n, 92), g = random(n, 93);
    const std::vector<float> start = a.cpu;
    gpu_->bias_gelu(rows, cols, bias.gpu, a.gpu, g.gpu);
    const std::vector<float> plain = from_gpu(g);
    gpu_->copy_to_device(a.gpu, start.data(), n * sizeof(float));
    Both<uint16_t> g16 = copy_of(n);
    gpu_->bias_gelu(rows, cols, bias.gpu, a.gpu, g.gpu, g16.gpu);
    check("bias_gelu", g, plain, g16);
    Both<float> da = random(n, 94);
    gpu_->gelu_backward(1, rows, cols, a.gpu, g.gpu, da.gpu, nullptr, nullptr);
    const std::vector<float> dplain = from_gpu(da);
    Both<uint16_t> da16 = copy_of(n);
    gpu_->gelu_backward(1, rows, cols, a.gpu, g.gpu, da.gpu, da16.gpu, nullptr);
    check("gelu_backward", da, dplain, da16);
    // bf16 only (no fp32 output, as the MLPs run under bf16): the same copy
    // and the same derivative.
    const std::vector<float> derivative = from_gpu(a);
    gpu_->copy_to_device(a.gpu, start.data(), n * sizeof(float));
    Both<uint16_t> only16 = copy_of(n);
    gpu_->bias_gelu(rows, cols, bias.gpu, a.gpu, nullptr, only16.gpu);
    EXPECT_EQ(from_gpu(only16), host_bf16(plain)) << "bias_gelu, bf16 only";
    EXPECT_EQ(from_gpu(a), derivative) << "bias_gelu, bf16 only: the derivative";
    // The slope as its copy alone: the input only read.
    gpu_->copy_to_device(a.gpu, start.data(), n * sizeof(float));
    Both<uint16_t> slope16 = copy_of(n), g_only16 = copy_of(n);
    gpu_->expert_bias_gelu(1, rows, cols, bias.gpu, a.gpu, nullptr, nullptr, g_only16.gpu,
                           slope16.gpu);
    EXPECT_EQ(from_gpu(g_only16), host_bf16(plain)) << "bias_gelu, slope's copy";
    EXPECT_EQ(from_gpu(slope16), host_bf16(derivative)) << "bias_gelu: the slope's copy";
    EXPECT_EQ(from_gpu(a), start) << "bias_gelu with the slope's copy: the input only read";
    // The input as bf16 (fc1's output under bf16) = its widened values.
    const std::vector<uint16_t> start16 = host_bf16(start);
    std::vector<float> widened(n);
    for (int64_t i = 0; i < n; ++i) widened[i] = from_bf16(start16[i]);
    Both<uint16_t> in16 = both(start16);
    Both<float> w = both(widened);
    Both<uint16_t> g_w = copy_of(n), s_w = copy_of(n), g_in16 = copy_of(n), s_in16 = copy_of(n);
    gpu_->expert_bias_gelu(1, rows, cols, bias.gpu, w.gpu, nullptr, nullptr, g_w.gpu, s_w.gpu);
    gpu_->expert_bias_gelu(1, rows, cols, bias.gpu, nullptr, in16.gpu, nullptr, g_in16.gpu,
                           s_in16.gpu);
    EXPECT_EQ(from_gpu(g_in16), from_gpu(g_w)) << "bias_gelu from a bf16 input";
    EXPECT_EQ(from_gpu(s_in16), from_gpu(s_w)) << "bias_gelu from a bf16 input: the slope";
  }
  {
    Both<float> x = random(n, 95, 3.0f), gamma = random(cols, 96), beta = random(cols, 97);
    Both<float> y = random(n, 98), mean = random(rows, 99), rstd = random(rows, 100);
    gpu_->layernorm_forward(rows, cols, 1e-6f, x.gpu, gamma.gpu, beta.gpu, y.gpu, mean.gpu,
                            rstd.gpu);
    const std::vector<float> plain = from_gpu(y);
    Both<uint16_t> y16 = copy_of(n);
    gpu_->layernorm_forward(rows, cols, 1e-6f, x.gpu, gamma.gpu, beta.gpu, y.gpu, y16.gpu, mean.gpu,
                            rstd.gpu);
    check("layernorm_forward", y, plain, y16);
    // bf16 only (no fp32 output, as a norm only GEMMs read under bf16).
    Both<uint16_t> only16 = copy_of(n);
    gpu_->layernorm_forward(rows, cols, 1e-6f, x.gpu, gamma.gpu, beta.gpu, nullptr, only16.gpu,
                            mean.gpu, rstd.gpu);
    EXPECT_EQ(from_gpu(only16), host_bf16(plain)) << "layernorm_forward, bf16 only";
  }
  {
    // Rows longer than a warp holds (the block kernel), bf16 only.
    const int wide = 1500;
    Both<float> x = random(rows * wide, 102, 3.0f), gamma = random(wide, 103);
    Both<float> beta = random(wide, 104), y = random(rows * wide, 105);
    Both<float> mean = random(rows, 106), rstd = random(rows, 107);
    gpu_->layernorm_forward(rows, wide, 1e-6f, x.gpu, gamma.gpu, beta.gpu, y.gpu, mean.gpu,
                            rstd.gpu);
    Both<uint16_t> only16 = copy_of(rows * wide);
    gpu_->layernorm_forward(rows, wide, 1e-6f, x.gpu, gamma.gpu, beta.gpu, nullptr, only16.gpu,
                            mean.gpu, rstd.gpu);
    EXPECT_EQ(from_gpu(only16), host_bf16(from_gpu(y))) << "layernorm_forward, wide, bf16 only";
  }
  {
    Both<float> p = random(rows * 17, 101, 4.0f);
    const std::vector<float> start = p.cpu;
    gpu_->softmax_forward(rows, 17, 0.4f, p.gpu);
    const std::vector<float> plain = from_gpu(p);
    gpu_->copy_to_device(p.gpu, start.data(), start.size() * sizeof(float));
    Both<uint16_t> p16 = copy_of(rows * 17);
    gpu_->softmax_forward(rows, 17, 0.4f, p.gpu, p16.gpu);
    check("softmax_forward", p, plain, p16);
    Both<float> d = random(rows * 17, 102);
    const std::vector<float> dstart = d.cpu;
    gpu_->softmax_backward(rows, 17, 0.4f, p.gpu, d.gpu);
    const std::vector<float> dplain = from_gpu(d);
    gpu_->copy_to_device(d.gpu, dstart.data(), dstart.size() * sizeof(float));
    Both<uint16_t> d16 = copy_of(rows * 17);
    gpu_->softmax_backward(rows, 17, 0.4f, p.gpu, d.gpu, d16.gpu);
    check("softmax_backward", d, dplain, d16);
    // bf16 only, from dp (left as it was), rows with a gap as the attention's.
    const int ld = 24;
    Both<float> pp = random(rows * ld, 108, 4.0f), dp = random(rows * ld, 109);
    gpu_->softmax_forward(rows, 17, ld, 0.4f, pp.gpu, nullptr);
    Both<float> full = random(rows * ld, 110);
    gpu_->softmax_backward(rows, 17, ld, 0.4f, pp.gpu, dp.gpu, full.gpu, nullptr);
    Both<uint16_t> only16 = copy_of(rows * ld);
    gpu_->softmax_backward(rows, 17, ld, 0.4f, pp.gpu, dp.gpu, nullptr, only16.gpu);
    EXPECT_EQ(from_gpu(only16), host_bf16(from_gpu(full))) << "softmax_backward, bf16 only";
    EXPECT_EQ(from_gpu(dp), dp.cpu) << "softmax_backward, bf16 only: dp unchanged";
  }
  {  // The optimisers refresh the weights' copy in their update pass.
    const int64_t count = 100003;
    Both<float> grad = random(count, 103), param = random(count, 104);
    Both<float> m = random(count, 105, 0.1f), v = both(std::vector<float>(count, 0.01f));
    Both<uint16_t> p16 = copy_of(count);
    const Both<UpdateScalars> s = update(1e-3, 3);
    gpu_->adam_update(count, 0.9f, 0.999f, 1e-8f, 0.1f, s.gpu, grad.gpu, param.gpu, p16.gpu, m.gpu,
                      v.gpu);
    EXPECT_EQ(from_gpu(p16), host_bf16(from_gpu(param))) << "adam_update copy";
    gpu_->sgd_update(count, 0.9f, 1e-4f, s.gpu, grad.gpu, param.gpu, p16.gpu, m.gpu);
    EXPECT_EQ(from_gpu(p16), host_bf16(from_gpu(param))) << "sgd_update copy";
  }
}

// The GELU's backward with the bias gradient in the same pass, at the MLPs'
// shapes: several row chunks per expert, column tiles that do not divide the
// row (packed: cols % 4 == 0; single floats: 37), experts. Against the CPU;
// and bf16 only (no fp32 output, as under bf16) gives the same copy and the
// same bias gradient bit for bit.
TEST_F(CudaOps, GeluBackwardTakesTheBiasGradient) {
  struct Shape {
    int experts, rows, cols;
  };
  for (const Shape& s : {Shape{1, 700, 300}, Shape{3, 150, 37}, Shape{2, 260, 1024}}) {
    const int64_t n = int64_t{s.experts} * s.rows * s.cols, nb = int64_t{s.experts} * s.cols;
    const std::string at =
        std::to_string(s.experts) + "x" + std::to_string(s.rows) + "x" + std::to_string(s.cols);
    Both<float> a = random(n, 110), dg = random(n, 111), da = random(n, 112);
    Both<float> dbias = random(nb, 113);
    const std::vector<float> start = dbias.cpu;
    Both<uint16_t> da16 = both(std::vector<uint16_t>(n));
    cpu_.gelu_backward(s.experts, s.rows, s.cols, a.cpu.data(), dg.cpu.data(), da.cpu.data(),
                       nullptr, dbias.cpu.data());
    gpu_->gelu_backward(s.experts, s.rows, s.cols, a.gpu, dg.gpu, da.gpu, da16.gpu, dbias.gpu);
    expect_close(("gelu_backward " + at).c_str(), da, 0.0);
    expect_close(("gelu_backward bias gradient " + at).c_str(), dbias, 1e-12);
    EXPECT_EQ(from_gpu(da16), host_bf16(from_gpu(da))) << "copy " << at;
    // bf16 only.
    const std::vector<float> full_dbias = from_gpu(dbias);
    gpu_->copy_to_device(dbias.gpu, start.data(), nb * sizeof(float));
    Both<uint16_t> only16 = both(std::vector<uint16_t>(n));
    gpu_->gelu_backward(s.experts, s.rows, s.cols, a.gpu, dg.gpu, nullptr, only16.gpu, dbias.gpu);
    EXPECT_EQ(from_gpu(only16), from_gpu(da16)) << "bf16 only " << at;
    EXPECT_EQ(from_gpu(dbias), full_dbias) << "bf16 only: bias gradient " << at;
    // The slope as its bf16 copy (the MLPs under bf16): the same bits as from
    // its widened values, on the GPU and against the CPU.
    const std::vector<uint16_t> slope_host = host_bf16(a.cpu);
    Both<uint16_t> slope16 = both(slope_host);
    std::vector<float> widened(n);
    for (int64_t i = 0; i < n; ++i) widened[i] = from_bf16(slope_host[i]);
    Both<float> w = both(widened);
    Both<float> dbias_w = both(start), dbias_s = both(start);
    Both<uint16_t> from_w = both(std::vector<uint16_t>(n));
    Both<uint16_t> from_s = both(std::vector<uint16_t>(n));
    gpu_->gelu_backward(s.experts, s.rows, s.cols, w.gpu, dg.gpu, nullptr, from_w.gpu, dbias_w.gpu);
    gpu_->gelu_backward(s.experts, s.rows, s.cols, nullptr, slope16.gpu, dg.gpu, nullptr, nullptr,
                        from_s.gpu, dbias_s.gpu);
    EXPECT_EQ(from_gpu(from_s), from_gpu(from_w)) << "from the slope's copy " << at;
    EXPECT_EQ(from_gpu(dbias_s), from_gpu(dbias_w))
        << "from the slope's copy: bias gradient " << at;
    cpu_.gelu_backward(s.experts, s.rows, s.cols, nullptr, slope16.cpu.data(), dg.cpu.data(),
                       nullptr, nullptr, from_s.cpu.data(), dbias_s.cpu.data());
    EXPECT_EQ(from_gpu(from_s), from_s.cpu) << "from the slope's copy, against the CPU " << at;
    // dg as bf16, overwritten in place by da's copy (fc2's input gradient
    // under bf16) = from its widened values.
    const std::vector<uint16_t> dg_host = host_bf16(dg.cpu);
    std::vector<float> dg_widened(n);
    for (int64_t i = 0; i < n; ++i) dg_widened[i] = from_bf16(dg_host[i]);
    Both<float> dgw = both(dg_widened);
    Both<uint16_t> in_place = both(dg_host), from_dgw = both(std::vector<uint16_t>(n));
    Both<float> dbias_p = both(start), dbias_q = both(start);
    gpu_->gelu_backward(s.experts, s.rows, s.cols, nullptr, slope16.gpu, dgw.gpu, nullptr, nullptr,
                        from_dgw.gpu, dbias_q.gpu);
    gpu_->gelu_backward(s.experts, s.rows, s.cols, nullptr, slope16.gpu, nullptr, in_place.gpu,
                        nullptr, in_place.gpu, dbias_p.gpu);
    EXPECT_EQ(from_gpu(in_place), from_gpu(from_dgw)) << "from a bf16 dg, in place " << at;
    EXPECT_EQ(from_gpu(dbias_p), from_gpu(dbias_q)) << "from a bf16 dg: bias gradient " << at;
    expect_close(("from the slope's copy: bias gradient, against the CPU " + at).c_str(), dbias_s,
                 1e-12);
  }
}

}  // namespace
}  // namespace vmoe
