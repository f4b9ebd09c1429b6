// The fixture of the GPU op tests: each op runs on the CPU backend and on the
// GPU on the same random inputs, and the outputs are compared (floats by
// normalised MSE, integers exactly). Without a GPU every test skips, saying
// why.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cuda/cuda_backend.h"
#include "core/math.h"
#include "tests/test_util.h"

namespace vmoe {
namespace testing {

constexpr double kMaxNmse = 1e-7;

// The bf16 copy of an array, made on the host with the shared rounding.
inline std::vector<uint16_t> host_bf16(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = to_bf16(x[i]);
  return out;
}

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0)
      GTEST_SKIP() << "no CUDA device visible to this process: the GPU op tests only run where "
                      "one exists (the CUDA code was compiled and linked)";
    gpu_ = std::make_unique<CudaBackend>(0);
  }
  void TearDown() override {
    for (void* p : gpu_buffers_) gpu_->deallocate(p);
  }

  // A host array and its copy on the GPU; ops run on the host copy through
  // the CPU backend (whose "device" memory is host memory) and on the GPU copy.
  template <typename T>
  struct Both {
    std::vector<T> cpu;
    T* gpu = nullptr;
  };
  template <typename T>
  Both<T> both(std::vector<T> host) {
    Both<T> b{std::move(host), nullptr};
    b.gpu = static_cast<T*>(gpu_->allocate(std::max<size_t>(1, b.cpu.size()) * sizeof(T)));
    gpu_buffers_.push_back(b.gpu);
    gpu_->copy_to_device(b.gpu, b.cpu.data(), b.cpu.size() * sizeof(T));
    return b;
  }
  // An optimiser step's scalars (rate lr, update number step; betas 0.9,
  // 0.999) on both sides.
  Both<UpdateScalars> update(double lr, int64_t step) {
    return both(std::vector<UpdateScalars>{update_scalars(lr, 0.9f, 0.999f, step)});
  }
  Both<float> random(size_t n, uint64_t seed, float scale = 1.0f) {
    return both(random_normal(n, seed, scale));
  }
  template <typename T>
  std::vector<T> from_gpu(const Both<T>& b) {
    std::vector<T> out(b.cpu.size());
    gpu_->copy_to_host(out.data(), b.gpu, out.size() * sizeof(T));
    return out;
  }
  template <typename T>
  void expect_close(const char* what, const Both<T>& b, double max_nmse = kMaxNmse) {
    const std::vector<T> g = from_gpu(b);
    double err = 0, norm = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      err += std::pow(double{g[i]} - b.cpu[i], 2);
      norm += double{b.cpu[i]} * b.cpu[i];
    }
    EXPECT_LE(err / std::max(norm, 1e-30), max_nmse) << what << ": normalised MSE";
  }
  template <typename T>
  void expect_equal(const char* what, const Both<T>& b) {
    EXPECT_EQ(from_gpu(b), b.cpu) << what;
  }

  CpuBackend cpu_;
  std::unique_ptr<CudaBackend> gpu_;
  std::vector<void*> gpu_buffers_;
};

}  // namespace testing
}  // namespace vmoe
