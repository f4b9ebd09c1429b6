// Helpers shared by the unit tests: random host data and central
// finite-difference gradient checks.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/param_store.h"
#include "core/vit_config.h"
#include "core/random.h"

namespace vmoe::testing {

inline std::vector<float> random_normal(size_t n, uint64_t seed, float scale = 1.0f) {
  RandomStream rng(seed, Stream::kTest);
  std::vector<float> v(n);
  for (float& x : v) x = scale * rng.normal();
  return v;
}

// Overwrites every parameter with N(0, scale^2) values (zero heads and unit
// norms would hide gradient bugs).
inline void randomize_parameters(ParamStore& store, uint64_t seed, float scale = 0.5f) {
  std::vector<float> v = random_normal(static_cast<size_t>(store.size()), seed, scale);
  store.values().copy_from_host(v);
}

// Compares analytic gradients with central differences at up to
// `samples` coordinates of `values` (a host mirror of device data that
// `upload` writes back). `loss` must recompute the scalar objective.
struct GradCheck {
  float step = 1e-2f;
  double rtol = 2e-2, atol = 2e-3;
  int samples = 40;

  void run(const std::string& what, std::vector<float>& values,
           const std::vector<float>& analytic, const std::function<void()>& upload,
           const std::function<double()>& loss) const {
    ASSERT_EQ(values.size(), analytic.size()) << what;
    const size_t n = values.size();
    const size_t stride = std::max<size_t>(1, n / static_cast<size_t>(samples));
    int bad = 0;
    for (size_t i = (n > 1 ? 1 : 0) % n; i < n; i += stride) {
      const float saved = values[i];
      values[i] = saved + step;
      upload();
      const double plus = loss();
      values[i] = saved - step;
      upload();
      const double minus = loss();
      values[i] = saved;
      upload();
      const double numeric = (plus - minus) / (2.0 * step);
      const double tol = atol + rtol * std::max(std::fabs(numeric), std::fabs(double{analytic[i]}));
      if (std::fabs(numeric - analytic[i]) > tol && bad++ < 5) {
        ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " numeric "
                      << numeric;
      }
    }
    EXPECT_EQ(bad, 0) << what;
  }

  // Checks every parameter of `store` against the gradients in store.grads().
  void run_parameters(Backend& be, ParamStore& store, const std::function<double()>& loss) const {
    const std::vector<float> grads = store.grads().to_host();
    std::vector<float> values = store.values().to_host();
    for (ParamId id = 0; id < store.count(); ++id) {
      const int64_t off = store.offset(id), n = store.numel(id);
      std::vector<float> view(values.begin() + off, values.begin() + off + n);
      std::vector<float> g(grads.begin() + off, grads.begin() + off + n);
      run(store.spec(id).name, view, g,
          [&] { be.copy_to_device(store.value(id), view.data(), n * sizeof(float)); }, loss);
    }
  }
};

// A ViT small enough for finite differences: 8x8x2 images, 4x4 patches,
// D = 8, 2 blocks of 2 heads, 3 classes.
inline ViTConfig tiny_vit(Pooling pooling = Pooling::kToken, int mlp_dim = 16) {
  ViTConfig c;
  c.image = {8, 8, 2};
  c.patch_size = 4;
  c.hidden_size = 8;
  c.num_layers = 2;
  c.num_heads = 2;
  c.mlp_dim = mlp_dim;
  c.num_classes = 3;
  c.classifier = pooling;
  return c;
}

// Runs `f` and returns the vmoe::Error message it throws ("" if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Weighted sum of a host array: the projection used as a scalar objective.
// Bit for bit: memcmp, so that -0.0f vs 0.0f or NaN payloads would count too.
inline void expect_identical(const std::vector<float>& a, const std::vector<float>& b,
                      const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0) return;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << what << " [" << i << "]";
  ADD_FAILURE() << what << ": equal values, different bits";
}

// sum x^2 of n device floats, read back to the host.
inline double sum_squares(Backend& be, int64_t n, const float* x) {
  DeviceTensor<double> out(be, {1});
  be.sum_squares(n, x, out.data());
  return out.to_host()[0];
}

// Clips the store's gradients to global norm max_norm in place (one rank),
// the factor from the device op the trainer uses: the reference for the
// optimiser applying it as it reads them. Returns the norm before clipping.
inline double clip_gradients(ParamStore& store, float max_norm) {
  Backend& be = store.grads().backend();
  DeviceTensor<double> sq(be, {2}), norm(be, {1});
  Tensor factor(be, {1});
  be.sum_squares(store.size(), store.grads().data(), sq.data());
  be.zero(sq.data() + 1, sizeof(double));
  be.clip_scale(sq.data(), 1.0, max_norm, norm.data(), factor.data());
  be.scale(store.grads().data(), store.size(), factor.to_host()[0]);
  return norm.to_host()[0];
}

inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

}  // namespace vmoe::testing
