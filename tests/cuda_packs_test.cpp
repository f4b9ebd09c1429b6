// The element-wise kernels move 4 floats per transaction where pointers and
// sizes allow (core/cuda/cuda_packs.cuh) and one otherwise; both widths do
// the same arithmetic per element, so they must give the same bits. Each op
// runs on aligned buffers (packed) and on the same values one float further
// on (misaligned: one float at a time), and the outputs are compared exactly;
// the packed outputs also match the CPU. Without a GPU every test skips.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "tests/cuda_ops_fixture.h"

namespace vmoe {
namespace {

using testing::CudaOps;
using testing::random_normal;

class CudaPacks : public CudaOps {
 protected:
  // A device copy of `host` starting `offset` floats into its allocation.
  float* place(const std::vector<float>& host, int offset) {
    auto* p = static_cast<float*>(gpu_->allocate((host.size() + 4) * sizeof(float)));
    gpu_buffers_.push_back(p);
    gpu_->copy_to_device(p + offset, host.data(), host.size() * sizeof(float));
    return p + offset;
  }
  std::vector<float> read(const float* p, size_t n) {
    std::vector<float> out(n);
    gpu_->copy_to_host(out.data(), p, n * sizeof(float));
    return out;
  }
  // Runs `op` over buffers holding `inputs` at offset 0 and at offset 1; the
  // outputs (every buffer, read back) must be identical.
  void same_bits(const char* what, const std::vector<std::vector<float>>& inputs,
                 const std::function<void(const std::vector<float*>&)>& op) {
    std::vector<std::vector<float>> outputs[2];
    for (int offset : {0, 1}) {
      std::vector<float*> bufs;
      for (const auto& in : inputs) bufs.push_back(place(in, offset));
      op(bufs);
      for (size_t b = 0; b < bufs.size(); ++b)
        outputs[offset].push_back(read(bufs[b], inputs[b].size()));
    }
    for (size_t b = 0; b < inputs.size(); ++b)
      EXPECT_EQ(outputs[0][b], outputs[1][b]) << what << ": buffer " << b;
  }
};

TEST_F(CudaPacks, PackedAndSingleWidthsGiveTheSameBits) {
  const int rows = 19, cols = 64;
  const int64_t n = rows * cols;
  const std::vector<float> x = random_normal(n, 1), y = random_normal(n, 2);
  const std::vector<float> bias = random_normal(cols, 3), g = random_normal(n, 4);
  same_bits("fill, scale, axpy", {x, y}, [&](const std::vector<float*>& b) {
    gpu_->fill(b[0], 8, 2.0f);
    gpu_->scale(b[0], n, 0.7f);
    gpu_->axpy(n, -0.3f, b[0], b[1]);
  });
  same_bits("add_bias", {bias, y},
            [&](const std::vector<float*>& b) { gpu_->add_bias(rows, cols, b[0], b[1]); });
  const std::vector<float> dbias = random_normal(cols, 6);
  same_bits("bias_gelu, gelu_backward", {bias, x, g, y, dbias}, [&](const std::vector<float*>& b) {
    gpu_->bias_gelu(rows, cols, b[0], b[1], b[2]);
    gpu_->gelu_backward(1, rows, cols, b[1], b[2], b[3], nullptr, b[4]);
  });
  std::vector<float> v = random_normal(n, 5);
  for (float& e : v) e = e * e;
  const Both<UpdateScalars> s = update(1e-3, 3);
  same_bits("adam, sgd", {g, x, y, v}, [&](const std::vector<float*>& b) {
    gpu_->adam_update(n, 0.9f, 0.999f, 1e-8f, 0.1f, s.gpu, b[0], b[1], nullptr, b[2], b[3]);
    gpu_->sgd_update(n, 0.9f, 1e-4f, s.gpu, b[0], b[1], nullptr, b[2]);
  });
  // The packed path against the CPU (an aligned, divisible size).
  Both<float> a = both(x), out = both(std::vector<float>(n)), bb = both(bias);
  cpu_.bias_gelu(rows, cols, bb.cpu.data(), a.cpu.data(), out.cpu.data());
  gpu_->bias_gelu(rows, cols, bb.gpu, a.gpu, out.gpu);
  expect_close("packed bias_gelu", out);
  expect_close("packed bias_gelu derivative", a);
}

// The attention's head packing (q|k|v with the bias, then back): float4 rows
// of a head where aligned, one float otherwise, the same bits.
TEST_F(CudaPacks, HeadPackingAtBothWidths) {
  const int64_t images = 3;
  const int tokens = 13, padded = 16, heads = 2, head_dim = 8, slabs = 3;
  const int64_t width = int64_t{slabs} * heads * head_dim, rows = images * tokens;
  const int64_t packed = slabs * images * heads * padded * head_dim;
  const std::vector<float> x = random_normal(rows * width, 7), bias = random_normal(width, 8);
  same_bits("pack_heads, unpack_heads", {x, bias, std::vector<float>(packed), x, bias},
            [&](const std::vector<float*>& b) {
              gpu_->pack_heads(images, tokens, padded, heads, head_dim, slabs, b[0], b[1], b[2],
                               nullptr);
              gpu_->unpack_heads(images, tokens, padded, heads, head_dim, slabs, b[2], b[3],
                                 nullptr, b[4]);
            });
}

}  // namespace
}  // namespace vmoe
