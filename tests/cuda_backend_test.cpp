// Every op of the CUDA backend against the CPU backend on random inputs:
// float outputs within a normalised MSE of 1e-7, integer outputs (routing
// decisions, buffer rows, counts) exactly equal. Without a GPU every test
// reports itself as skipped, with the reason.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "core/attention.h"
#include "tests/cuda_ops_fixture.h"

namespace vmoe {
namespace {

using testing::CudaOps;
using testing::host_bf16;
using testing::random_normal;

TEST_F(CudaOps, MemoryAndCopies) {
  Both<float> a = random(1000, 1);
  Both<float> b = both(std::vector<float>(1000, 0.0f));
  gpu_->copy(b.gpu, a.gpu, 1000 * sizeof(float));
  EXPECT_EQ(from_gpu(b), a.cpu);
  // The allocator reuses freed blocks: no new cudaMalloc for the same size.
  void* p = gpu_->allocate(1 << 20);
  gpu_->deallocate(p);
  const int64_t mallocs = gpu_->allocator().system_allocations();
  void* q = gpu_->allocate(1 << 20);
  EXPECT_EQ(gpu_->allocator().system_allocations(), mallocs);
  gpu_->deallocate(q);
}

TEST_F(CudaOps, GemmAllTransposesAndBothBatchLevels) {
  const int m = 33, n = 17, k = 29;
  for (Trans ta : {Trans::kNo, Trans::kYes}) {
    for (Trans tb : {Trans::kNo, Trans::kYes}) {
      const int lda = ta == Trans::kNo ? k : m, ldb = tb == Trans::kNo ? n : k;
      Both<float> a = random(m * k, 2), b = random(k * n, 3), c = random(m * n, 4);
      cpu_.gemm(ta, tb, m, n, k, 1.5f, a.cpu.data(), lda, b.cpu.data(), ldb, 0.5f, c.cpu.data(), n);
      gpu_->gemm(ta, tb, m, n, k, 1.5f, a.gpu, lda, b.gpu, ldb, 0.5f, c.gpu, n);
      expect_close("gemm", c);
      // 2 x 5 and 5 x 2 batch levels (either may be the batched one).
      for (auto [outer, inner] : {std::pair{2, 5}, std::pair{5, 2}}) {
        const int64_t count = outer * inner;
        Both<float> ba = random(count * m * k, 5), bb = random(count * k * n, 6);
        Both<float> bc = random(count * m * n, 7);
        const BatchLevel o{outer, inner * m * k, inner * k * n, inner * m * n};
        const BatchLevel i{inner, m * k, k * n, m * n};
        cpu_.gemm_batched(ta, tb, m, n, k, 0.7f, ba.cpu.data(), lda, bb.cpu.data(), ldb, 0.0f,
                          bc.cpu.data(), n, o, i);
        gpu_->gemm_batched(ta, tb, m, n, k, 0.7f, ba.gpu, lda, bb.gpu, ldb, 0.0f, bc.gpu, n, o, i);
        expect_close("gemm_batched", bc);
      }
    }
  }
}

// --tf32: fp32 GEMMs on TF32 tensor cores round the inputs to a 10-bit
// mantissa (relative error ~2^-11 per input), so they are close to the CPU's
// exact fp32, not equal; off again, they are exact fp32 as before.
TEST_F(CudaOps, Tf32GemmIsCloseToFp32) {
  const int m = 128, n = 96, k = 160;
  Both<float> a = random(m * k, 90), b = random(k * n, 91), c = random(m * n, 92);
  ASSERT_TRUE(gpu_->set_tf32(true));
  EXPECT_FALSE(cpu_.set_tf32(true));
  cpu_.gemm(Trans::kNo, Trans::kNo, m, n, k, 1.0f, a.cpu.data(), k, b.cpu.data(), n, 0.0f,
            c.cpu.data(), n);
  gpu_->gemm(Trans::kNo, Trans::kNo, m, n, k, 1.0f, a.gpu, k, b.gpu, n, 0.0f, c.gpu, n);
  expect_close("gemm (tf32)", c, 1e-5);
  gpu_->set_tf32(false);
  gpu_->gemm(Trans::kNo, Trans::kNo, m, n, k, 1.0f, a.gpu, k, b.gpu, n, 0.0f, c.gpu, n);
  expect_close("gemm (fp32 again)", c);
}

TEST_F(CudaOps, ElementwiseAndBias) {
  const int rows = 37, cols = 300;
  const int64_t n = rows * cols;
  Both<float> x = random(n, 8), y = random(n, 9), bias = random(cols, 10);
  cpu_.fill(x.cpu.data(), 5, 3.0f);
  gpu_->fill(x.gpu, 5, 3.0f);
  cpu_.scale(x.cpu.data(), n, 0.7f);
  gpu_->scale(x.gpu, n, 0.7f);
  cpu_.axpy(n, -0.3f, x.cpu.data(), y.cpu.data());
  gpu_->axpy(n, -0.3f, x.gpu, y.gpu);
  expect_close("fill, scale, axpy", y);
  cpu_.add_bias(rows, cols, bias.cpu.data(), y.cpu.data());
  gpu_->add_bias(rows, cols, bias.gpu, y.gpu);
  expect_close("add_bias", y);
  Both<float> dbias = random(cols, 11);
  cpu_.bias_grad(rows, cols, y.cpu.data(), dbias.cpu.data());
  gpu_->bias_grad(rows, cols, y.gpu, dbias.gpu);
  expect_close("bias_grad", dbias);
  Both<float> a = random(n, 12), g = random(n, 13);
  cpu_.bias_gelu(rows, cols, bias.cpu.data(), a.cpu.data(), g.cpu.data());
  gpu_->bias_gelu(rows, cols, bias.gpu, a.gpu, g.gpu);
  expect_close("bias_gelu derivative", a);
  expect_close("bias_gelu", g);
  Both<float> da = random(n, 14), dpre_bias = random(cols, 15);
  cpu_.gelu_backward(1, rows, cols, a.cpu.data(), g.cpu.data(), da.cpu.data(), nullptr,
                     dpre_bias.cpu.data());
  gpu_->gelu_backward(1, rows, cols, a.gpu, g.gpu, da.gpu, nullptr, dpre_bias.gpu);
  expect_close("gelu_backward", da);
  expect_close("gelu_backward: the bias gradient", dpre_bias);
  cpu_.tanh_forward(n, a.cpu.data());
  gpu_->tanh_forward(n, a.gpu);
  expect_close("tanh_forward", a);
  cpu_.tanh_backward(n, a.cpu.data(), da.cpu.data());
  gpu_->tanh_backward(n, a.gpu, da.gpu);
  expect_close("tanh_backward", da);
}

// The experts' biases in one call over expert-major rows (no host loop over
// experts): each expert's rows get its own bias row.
TEST_F(CudaOps, ExpertBiases) {
  const int experts = 3, rows = 21, cols = 40;
  const int64_t n = int64_t{experts} * rows * cols;
  Both<float> bias = random(experts * cols, 60), y = random(n, 61), a = random(n, 62);
  Both<float> g = random(n, 63), dbias = random(experts * cols, 64);
  cpu_.expert_add_bias(experts, rows, cols, bias.cpu.data(), y.cpu.data());
  gpu_->expert_add_bias(experts, rows, cols, bias.gpu, y.gpu);
  expect_close("expert_add_bias", y);
  cpu_.expert_bias_gelu(experts, rows, cols, bias.cpu.data(), a.cpu.data(), g.cpu.data(), nullptr);
  gpu_->expert_bias_gelu(experts, rows, cols, bias.gpu, a.gpu, g.gpu, nullptr);
  expect_close("expert_bias_gelu", g);
  expect_close("expert_bias_gelu derivative", a);
  cpu_.expert_bias_grad(experts, rows, cols, y.cpu.data(), dbias.cpu.data());
  gpu_->expert_bias_grad(experts, rows, cols, y.gpu, dbias.gpu);
  expect_close("expert_bias_grad", dbias);
  // The CPU op is the per-expert op, expert by expert.
  std::vector<float> want = y.cpu;
  for (int e = 0; e < experts; ++e)
    cpu_.add_bias(rows, cols, bias.cpu.data() + e * cols, want.data() + e * rows * cols);
  cpu_.expert_add_bias(experts, rows, cols, bias.cpu.data(), y.cpu.data());
  EXPECT_EQ(y.cpu, want);
}

// Rows a warp holds (384: 12 per lane; 768: 24 of 32 registers) and longer
// ones (one block per row); 300 rows span several of the backward's chunks.
TEST_F(CudaOps, LayerNorm) {
  for (const int rows : {45, 300})
    for (const int cols : {384, 768, 1100}) {
      SCOPED_TRACE("rows " + std::to_string(rows) + ", cols " + std::to_string(cols));
      Both<float> x = random(rows * cols, 15, 3.0f), gamma = random(cols, 16),
                  beta = random(cols, 17);
      Both<float> y = random(rows * cols, 18), mean = random(rows, 19), rstd = random(rows, 20);
      cpu_.layernorm_forward(rows, cols, 1e-6f, x.cpu.data(), gamma.cpu.data(), beta.cpu.data(),
                             y.cpu.data(), mean.cpu.data(), rstd.cpu.data());
      gpu_->layernorm_forward(rows, cols, 1e-6f, x.gpu, gamma.gpu, beta.gpu, y.gpu, mean.gpu,
                              rstd.gpu);
      expect_close("layernorm y", y);
      expect_close("layernorm mean", mean);
      expect_close("layernorm rstd", rstd);
      Both<float> resid = random(rows * cols, 27), sum = random(rows * cols, 28, 2.0f);
      cpu_.add_layernorm_forward(rows, cols, 1e-6f, resid.cpu.data(), sum.cpu.data(),
                                 gamma.cpu.data(), beta.cpu.data(), y.cpu.data(), nullptr,
                                 mean.cpu.data(), rstd.cpu.data());
      gpu_->add_layernorm_forward(rows, cols, 1e-6f, resid.gpu, sum.gpu, gamma.gpu, beta.gpu, y.gpu,
                                  nullptr, mean.gpu, rstd.gpu);
      expect_close("add_layernorm sum", sum);
      expect_close("add_layernorm y", y);
      expect_close("add_layernorm mean", mean);
      expect_close("add_layernorm rstd", rstd);
      Both<float> dy = random(rows * cols, 21), dx = random(rows * cols, 22);
      Both<float> dgamma = random(cols, 23), dbeta = random(cols, 24);
      Both<uint16_t> dx16 = both(std::vector<uint16_t>(rows * cols));
      const std::vector<float> dx_start = dx.cpu, dgamma_start = dgamma.cpu;
      cpu_.layernorm_backward(rows, cols, x.cpu.data(), gamma.cpu.data(), mean.cpu.data(),
                              rstd.cpu.data(), dy.cpu.data(), dx.cpu.data(), dx16.cpu.data(),
                              dgamma.cpu.data(), dbeta.cpu.data());
      auto backward = [&] {
        gpu_->layernorm_backward(rows, cols, x.gpu, gamma.gpu, mean.gpu, rstd.gpu, dy.gpu, dx.gpu,
                                 dx16.gpu, dgamma.gpu, dbeta.gpu);
      };
      backward();
      expect_close("layernorm dx", dx);
      expect_close("layernorm dgamma", dgamma);
      expect_close("layernorm dbeta", dbeta);
      EXPECT_EQ(dx16.cpu, host_bf16(dx.cpu)) << "CPU: dx's copy";
      EXPECT_EQ(from_gpu(dx16), host_bf16(from_gpu(dx))) << "GPU: dx's copy";
      // The parameter gradients' sums have a fixed order: the same bits again.
      const std::vector<float> dgamma_first = from_gpu(dgamma);
      gpu_->copy_to_device(dx.gpu, dx_start.data(), dx_start.size() * sizeof(float));
      gpu_->copy_to_device(dgamma.gpu, dgamma_start.data(), dgamma_start.size() * sizeof(float));
      backward();
      EXPECT_EQ(from_gpu(dgamma), dgamma_first) << "dgamma run to run";
    }
}

// Softmax rows of a warp (17, 197, 200) and of a block (1100), packed and with
// the attention's padded row stride (the gap set to zero on both). A stride
// that divides by 4 takes the float4 kernels (200 with no gap, and every
// padded stride); 17 and 197 unpadded take the one-float ones.
TEST_F(CudaOps, Softmax) {
  const int rows = 45;
  for (const int cols : {17, 197, 200, 1100}) {
    for (const int ld : {cols, gpu_->scores_ld(cols) + 8}) {
      SCOPED_TRACE("cols " + std::to_string(cols) + ", ld " + std::to_string(ld));
      Both<float> p = random(rows * ld, 25, 4.0f);
      const std::vector<float> scores = p.cpu;
      cpu_.softmax_forward(rows, cols, ld, 0.4f, p.cpu.data(), nullptr);
      gpu_->softmax_forward(rows, cols, ld, 0.4f, p.gpu, nullptr);
      expect_close("softmax", p);
      // The probabilities as their copy alone (the attention's under bf16):
      // the scores only read, the copy that of the in-place result.
      Both<float> s = both(scores);
      Both<uint16_t> p16 = both(std::vector<uint16_t>(rows * ld, 1));
      gpu_->softmax_forward(rows, cols, ld, 0.4f, s.gpu, nullptr, p16.gpu);
      EXPECT_EQ(from_gpu(s), scores) << "softmax, bf16 only: the scores only read";
      EXPECT_EQ(from_gpu(p16), host_bf16(from_gpu(p))) << "softmax, bf16 only";
      // The backward from that copy, against the CPU's.
      Both<float> dp = random(rows * ld, 29), from_copy = random(rows * ld, 30);
      p16.cpu = from_gpu(p16);
      cpu_.softmax_backward(rows, cols, ld, 0.4f, nullptr, p16.cpu.data(), dp.cpu.data(),
                            from_copy.cpu.data(), nullptr);
      gpu_->softmax_backward(rows, cols, ld, 0.4f, nullptr, p16.gpu, dp.gpu, from_copy.gpu,
                             nullptr);
      expect_close("softmax_backward from the probabilities' copy", from_copy);
      Both<float> d = random(rows * ld, 26);
      cpu_.softmax_backward(rows, cols, ld, 0.4f, p.cpu.data(), d.cpu.data(), d.cpu.data(),
                            nullptr);
      gpu_->softmax_backward(rows, cols, ld, 0.4f, p.gpu, d.gpu, d.gpu, nullptr);
      expect_close("softmax_backward", d);
      // From dp into its bf16 copy alone (the attention's score gradient under bf16).
      Both<uint16_t> d16 = both(std::vector<uint16_t>(rows * ld, 1));
      cpu_.softmax_backward(rows, cols, ld, 0.4f, p.cpu.data(), d.cpu.data(), nullptr,
                            d16.cpu.data());
      gpu_->softmax_backward(rows, cols, ld, 0.4f, p.gpu, d.gpu, nullptr, d16.gpu);
      const std::vector<uint16_t> g16 = from_gpu(d16);
      for (size_t i = 0; i < g16.size(); ++i)  // within one bf16 rounding step of the CPU's
        ASSERT_LE(std::abs(from_bf16(g16[i]) - from_bf16(d16.cpu[i])),
                  std::abs(from_bf16(d16.cpu[i])) * 1e-2f + 1e-5f)
            << "softmax_backward, bf16 only, at " << i;
      const std::vector<float> pg = from_gpu(p), dg = from_gpu(d);
      for (int r = 0; r < rows; ++r)
        for (int c = cols; c < ld; ++c) {
          ASSERT_EQ(p.cpu[r * ld + c], 0.0f) << "the CPU's softmax gap";
          ASSERT_EQ(pg[r * ld + c], 0.0f) << "the GPU's softmax gap";
          ASSERT_EQ(dg[r * ld + c], 0.0f) << "the GPU's softmax_backward gap";
        }
    }
  }
}

// Heads to head-major with padding and back (q|k|v: 3 slabs; context: 1).
TEST_F(CudaOps, PackAndUnpackHeads) {
  const int64_t images = 3;
  const int tokens = 13, padded = 16, heads = 4, head_dim = 8;
  for (const int slabs : {1, 3}) {
    const int64_t rows = images * tokens, width = int64_t{slabs} * heads * head_dim;
    const int64_t packed = slabs * images * heads * padded * head_dim;
    Both<float> x = random(rows * width, 90), y = random(packed, 91);
    Both<uint16_t> y16 = both(std::vector<uint16_t>(packed, 1));
    cpu_.pack_heads(images, tokens, padded, heads, head_dim, slabs, x.cpu.data(), nullptr,
                    y.cpu.data(), y16.cpu.data());
    gpu_->pack_heads(images, tokens, padded, heads, head_dim, slabs, x.gpu, nullptr, y.gpu,
                     y16.gpu);
    expect_equal("pack_heads", y);
    expect_equal("pack_heads bf16", y16);
    // With the projection's bias fused, and as its bf16 copy alone.
    Both<float> bias = random(width, 93), biased = random(packed, 94);
    Both<uint16_t> biased16 = both(std::vector<uint16_t>(packed, 1));
    Both<uint16_t> only16 = both(std::vector<uint16_t>(packed, 1));
    cpu_.pack_heads(images, tokens, padded, heads, head_dim, slabs, x.cpu.data(), bias.cpu.data(),
                    biased.cpu.data(), biased16.cpu.data());
    gpu_->pack_heads(images, tokens, padded, heads, head_dim, slabs, x.gpu, bias.gpu, biased.gpu,
                     biased16.gpu);
    cpu_.pack_heads(images, tokens, padded, heads, head_dim, slabs, x.cpu.data(), bias.cpu.data(),
                    nullptr, only16.cpu.data());
    gpu_->pack_heads(images, tokens, padded, heads, head_dim, slabs, x.gpu, bias.gpu, nullptr,
                     only16.gpu);
    expect_equal("pack_heads with bias", biased);
    expect_equal("pack_heads with bias, bf16", biased16);
    expect_equal("pack_heads with bias, bf16 only", only16);
    EXPECT_EQ(only16.cpu, biased16.cpu);
    std::vector<float> want(y.cpu);  // the packed x, plus the bias on real rows
    for (int64_t sbh = 0; sbh < slabs * images * heads; ++sbh) {
      const int64_t column = (sbh / (heads * images) * heads + sbh % heads) * head_dim;
      for (int t = 0; t < tokens; ++t)
        for (int c = 0; c < head_dim; ++c)
          want[(sbh * padded + t) * head_dim + c] += bias.cpu[column + c];
    }
    EXPECT_EQ(biased.cpu, want);
    Both<float> back = random(rows * width, 92);
    Both<uint16_t> back16 = both(std::vector<uint16_t>(rows * width, 1));
    Both<float> dbias = random(width, 95);
    cpu_.unpack_heads(images, tokens, padded, heads, head_dim, slabs, y.cpu.data(), back.cpu.data(),
                      back16.cpu.data(), dbias.cpu.data());
    gpu_->unpack_heads(images, tokens, padded, heads, head_dim, slabs, y.gpu, back.gpu, back16.gpu,
                       dbias.gpu);
    expect_equal("unpack_heads", back);
    expect_equal("unpack_heads bf16", back16);
    expect_close("unpack_heads: the bias gradient", dbias, 1e-12);
    EXPECT_EQ(back.cpu, x.cpu) << "unpack(pack(x)) is x";
    // bf16 only: the same copy and the same bias gradient.
    const std::vector<float> full_dbias = from_gpu(dbias);
    Both<float> dbias2 = random(width, 95);
    Both<uint16_t> back_only16 = both(std::vector<uint16_t>(rows * width, 1));
    gpu_->unpack_heads(images, tokens, padded, heads, head_dim, slabs, y.gpu, nullptr,
                       back_only16.gpu, dbias2.gpu);
    EXPECT_EQ(from_gpu(back_only16), from_gpu(back16)) << "unpack_heads, bf16 only";
    EXPECT_EQ(from_gpu(dbias2), full_dbias) << "unpack_heads, bf16 only: the bias gradient";
  }
}

TEST_F(CudaOps, PatchesTokensPooling) {
  const int batch = 3, h = 28, w = 28, ch = 1, patch = 7, patches = 16, dim = 24;
  Both<float> images = random(batch * h * w * ch, 27);
  Both<float> out = random(batch * patches * patch * patch * ch, 28);
  cpu_.patchify(batch, h, w, ch, patch, images.cpu.data(), out.cpu.data());
  gpu_->patchify(batch, h, w, ch, patch, images.gpu, out.gpu);
  expect_close("patchify", out);
  const int tokens = patches + 1;
  Both<float> proj = random(batch * patches * dim, 29), bias = random(dim, 30);
  Both<float> cls = random(dim, 31), pos = random(tokens * dim, 32);
  Both<float> tok = random(batch * tokens * dim, 33);
  cpu_.embed_tokens(batch, patches, dim, proj.cpu.data(), bias.cpu.data(), cls.cpu.data(),
                    pos.cpu.data(), tok.cpu.data());
  gpu_->embed_tokens(batch, patches, dim, proj.gpu, bias.gpu, cls.gpu, pos.gpu, tok.gpu);
  expect_close("embed_tokens", tok);
  Both<float> dproj = random(batch * patches * dim, 34), dbias = random(dim, 35);
  Both<float> dcls = random(dim, 36), dpos = random(tokens * dim, 37);
  cpu_.embed_tokens_backward(batch, patches, dim, tok.cpu.data(), dproj.cpu.data(),
                             dbias.cpu.data(), dcls.cpu.data(), dpos.cpu.data());
  gpu_->embed_tokens_backward(batch, patches, dim, tok.gpu, dproj.gpu, dbias.gpu, dcls.gpu,
                              dpos.gpu);
  expect_close("embed dproj", dproj);
  expect_close("embed dbias", dbias);
  expect_close("embed dcls", dcls);
  expect_close("embed dpos", dpos);
  for (bool mean : {false, true}) {
    Both<float> pooled = random(batch * dim, 38), dx = random(batch * tokens * dim, 39);
    cpu_.pool_rows(batch, tokens, dim, mean, tok.cpu.data(), pooled.cpu.data());
    gpu_->pool_rows(batch, tokens, dim, mean, tok.gpu, pooled.gpu);
    expect_close("pool_rows", pooled);
    cpu_.pool_rows_backward(batch, tokens, dim, mean, pooled.cpu.data(), dx.cpu.data());
    gpu_->pool_rows_backward(batch, tokens, dim, mean, pooled.gpu, dx.gpu);
    expect_close("pool_rows_backward", dx);
  }
}

TEST_F(CudaOps, LossesOptimisersNorm) {
  const int rows = 70, classes = 10;
  Both<float> logits = random(rows * classes, 40, 3.0f), weight = random(rows, 41);
  for (float& v : weight.cpu) v = v > 0 ? 1.0f : 0.0f;  // a mask of real rows
  gpu_->copy_to_device(weight.gpu, weight.cpu.data(), rows * sizeof(float));
  std::vector<int32_t> host_labels(rows);
  for (int i = 0; i < rows; ++i) host_labels[i] = (i * 7) % classes;
  Both<int32_t> labels = both(host_labels);
  Both<float> loss = random(rows, 42), dlogits = random(rows * classes, 43);
  cpu_.softmax_cross_entropy(rows, classes, logits.cpu.data(), labels.cpu.data(),
                             weight.cpu.data(), 0.01f, loss.cpu.data(), dlogits.cpu.data());
  gpu_->softmax_cross_entropy(rows, classes, logits.gpu, labels.gpu, weight.gpu, 0.01f, loss.gpu,
                              dlogits.gpu);
  expect_close("softmax_cross_entropy loss", loss);
  expect_close("softmax_cross_entropy dlogits", dlogits);
  Both<float> targets = random(rows * classes, 44);
  for (float& v : targets.cpu) v = v > 0.5f ? 1.0f : 0.0f;
  gpu_->copy_to_device(targets.gpu, targets.cpu.data(), targets.cpu.size() * sizeof(float));
  cpu_.sigmoid_cross_entropy(rows, classes, logits.cpu.data(), targets.cpu.data(),
                             weight.cpu.data(), 0.01f, loss.cpu.data(), dlogits.cpu.data());
  gpu_->sigmoid_cross_entropy(rows, classes, logits.gpu, targets.gpu, weight.gpu, 0.01f, loss.gpu,
                              dlogits.gpu);
  expect_close("sigmoid_cross_entropy loss", loss);
  expect_close("sigmoid_cross_entropy dlogits", dlogits);

  const int64_t n = 100003;
  Both<float> grad = random(n, 45), param = random(n, 46), m = random(n, 47, 0.1f);
  Both<float> v = random(n, 48, 0.1f);
  for (float& x : v.cpu) x = std::fabs(x);
  gpu_->copy_to_device(v.gpu, v.cpu.data(), n * sizeof(float));
  // The step's scalars, computed by each backend from a device step counter.
  const LrSchedule schedule{
      .base = 1e-3, .end = 1e-5, .warmup_steps = 3, .total_steps = 20, .decay = Decay::kCosine};
  Both<int64_t> counter = both(std::vector<int64_t>{6});
  Both<UpdateScalars> s = update(0.0, 1);
  // A clipping factor, applied by the updates as they read the gradients.
  Both<float> scale = both(std::vector<float>{0.7f});
  cpu_.begin_update(schedule, 0.9f, 0.999f, scale.cpu.data(), counter.cpu.data(), s.cpu.data());
  gpu_->begin_update(schedule, 0.9f, 0.999f, scale.gpu, counter.gpu, s.gpu);
  expect_equal("begin_update step", counter);
  EXPECT_EQ(counter.cpu[0], 7);
  const UpdateScalars on_gpu = from_gpu(s)[0], on_cpu = s.cpu[0];
  EXPECT_FLOAT_EQ(on_gpu.lr, on_cpu.lr);
  EXPECT_FLOAT_EQ(on_gpu.correction1, on_cpu.correction1);
  EXPECT_FLOAT_EQ(on_gpu.correction2, on_cpu.correction2);
  EXPECT_EQ(on_gpu.grad_scale, 0.7f);
  EXPECT_EQ(on_cpu.grad_scale, 0.7f);
  EXPECT_EQ(on_cpu.lr, static_cast<float>(schedule.at(6)));
  cpu_.adam_update(n, 0.9f, 0.999f, 1e-8f, 0.1f, s.cpu.data(), grad.cpu.data(), param.cpu.data(),
                   nullptr, m.cpu.data(), v.cpu.data());
  gpu_->adam_update(n, 0.9f, 0.999f, 1e-8f, 0.1f, s.gpu, grad.gpu, param.gpu, nullptr, m.gpu,
                    v.gpu);
  expect_close("adam param", param);
  expect_close("adam m", m);
  expect_close("adam v", v);
  cpu_.sgd_update(n, 0.9f, 1e-4f, s.cpu.data(), grad.cpu.data(), param.cpu.data(), nullptr,
                  m.cpu.data());
  gpu_->sgd_update(n, 0.9f, 1e-4f, s.gpu, grad.gpu, param.gpu, nullptr, m.gpu);
  expect_close("sgd param", param);
  expect_close("sgd momentum", m);
  const double want = testing::sum_squares(cpu_, n, grad.cpu.data());
  EXPECT_NEAR(testing::sum_squares(*gpu_, n, grad.gpu), want, 1e-6 * want);
}

// A batch on its way in: 8-bit pixels from pinned host memory, scaled on
// the device (exactly scale_pixel), and mixup of row pairs.
TEST_F(CudaOps, PixelsUploadAndMixup) {
  const int64_t rows = 6, n = 3001;
  auto* host = static_cast<uint8_t*>(gpu_->allocate_host(rows * n));
  std::vector<uint8_t> pixels(rows * n);
  for (int64_t i = 0; i < rows * n; ++i) host[i] = pixels[i] = static_cast<uint8_t>(i * 37 % 256);
  Both<float> x = both(std::vector<float>(rows * n));
  for (int round = 0; round < 3; ++round) {  // both staging slots, then the first again
    cpu_.upload_pixels(rows * n, pixels.data(), x.cpu.data());
    gpu_->upload_pixels(rows * n, host, x.gpu);
    expect_close("upload_pixels", x, 0.0);
  }
  gpu_->deallocate_host(host);
  cpu_.mix_pairs(rows / 2, n, 0.3f, x.cpu.data());
  gpu_->mix_pairs(rows / 2, n, 0.3f, x.gpu);
  expect_close("mix_pairs", x, 0.0);
}

// What a training step keeps on the device: clipping, metric accumulators,
// top-1 hits, zeroing.
TEST_F(CudaOps, StepReductionsStayOnTheDevice) {
  const int64_t n = 70001;
  Both<float> grad = random(n, 80);
  Both<double> sq = both(std::vector<double>{0.0, 0.0}), norm = both(std::vector<double>{0.0});
  Both<float> factor = both(std::vector<float>{0.0f});
  for (Backend* be : {static_cast<Backend*>(&cpu_), static_cast<Backend*>(gpu_.get())}) {
    const bool gpu = be != &cpu_;
    be->sum_squares(n / 2, gpu ? grad.gpu : grad.cpu.data(), gpu ? sq.gpu : sq.cpu.data());
    be->sum_squares(n - n / 2, (gpu ? grad.gpu : grad.cpu.data()) + n / 2,
                    (gpu ? sq.gpu : sq.cpu.data()) + 1);
    be->clip_scale(gpu ? sq.gpu : sq.cpu.data(), 3.0, 10.0f, gpu ? norm.gpu : norm.cpu.data(),
                   gpu ? factor.gpu : factor.cpu.data());
  }
  expect_close("sum_squares (device)", sq, 1e-12);
  expect_close("clip_scale norm", norm, 1e-12);
  expect_close("clip_scale factor", factor, 1e-12);
  EXPECT_LT(factor.cpu[0], 1.0f);  // sqrt(n) ~ 265 > 10: clipped
  // Column sums into double accumulators (which already hold values).
  const int64_t rows = 1037;
  const int cols = 4;
  Both<float> x = random(rows * cols, 81);
  Both<double> acc = both(std::vector<double>{1.0, -2.0, 0.5, 0.0});
  cpu_.accumulate_columns(rows, cols, x.cpu.data(), 0.25, acc.cpu.data());
  gpu_->accumulate_columns(rows, cols, x.gpu, 0.25, acc.gpu);
  expect_close("accumulate_columns", acc, 1e-12);
  // Top-1 hits against labels, with a mask and a tie (the lower index wins).
  const int classes = 5;
  Both<float> z = random(rows * classes, 82);
  std::vector<int32_t> host_label(rows);
  std::vector<float> host_mask(rows, 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    host_label[r] = static_cast<int32_t>(r % classes);
    if (r % 11 == 0) host_mask[r] = 0.0f;
  }
  z.cpu[3 * classes + 1] = z.cpu[3 * classes + 3] = 9.0f;  // row 3: a tie of 1 and 3
  gpu_->copy_to_device(z.gpu, z.cpu.data(), z.cpu.size() * sizeof(float));
  Both<int32_t> label = both(host_label);
  Both<float> mask = both(host_mask);
  Both<int64_t> hits = both(std::vector<int64_t>{7, 7});
  cpu_.count_top1_hits(rows, classes, z.cpu.data(), label.cpu.data(), mask.cpu.data(),
                       hits.cpu.data());
  gpu_->count_top1_hits(rows, classes, z.gpu, label.gpu, mask.gpu, hits.gpu);
  cpu_.count_top1_hits(rows, classes, z.cpu.data(), label.cpu.data(), nullptr, hits.cpu.data() + 1);
  gpu_->count_top1_hits(rows, classes, z.gpu, label.gpu, nullptr, hits.gpu + 1);
  expect_equal("count_top1_hits", hits);
  EXPECT_GT(hits.cpu[1], hits.cpu[0]);
  gpu_->zero(hits.gpu, 2 * sizeof(int64_t));
  EXPECT_EQ(from_gpu(hits), (std::vector<int64_t>{0, 0}));
}

}  // namespace
}  // namespace vmoe
