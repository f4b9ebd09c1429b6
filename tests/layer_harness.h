// A harness for layer gradient checks: the objective is <layer(x), R> for a
// fixed random R (plus an optional extra term), and every input and
// parameter gradient is compared with central finite differences.
#pragma once

#include <functional>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/param_store.h"
#include "core/workspace.h"
#include "tests/test_util.h"

namespace vmoe::testing {

struct LayerHarness {
  CpuBackend be;
  ParamStore store;
  Workspace ws{be};
  // forward(x, y) and backward(x, dy, dx) on device pointers.
  std::function<void(const float*, float*)> forward;
  std::function<void(const float*, const float*, float*)> backward;
  GradCheck check;
  // Added to the objective (e.g. a sublayer's auxiliary loss), evaluated after forward.
  std::function<double()> extra_objective;

  void run(size_t x_size, size_t y_size, bool check_input = true) {
    store.allocate(be);
    testing::randomize_parameters(store, 7);
    std::vector<float> x = random_normal(x_size, 1);
    const std::vector<float> r = random_normal(y_size, 2);
    Tensor xd(be, {static_cast<int64_t>(x_size)}), yd(be, {static_cast<int64_t>(y_size)});
    Tensor rd(be, {static_cast<int64_t>(y_size)}), dxd(be, {static_cast<int64_t>(x_size)});
    xd.copy_from_host(x);
    rd.copy_from_host(r);
    auto objective = [&] {
      forward(xd.data(), yd.data());
      return dot(yd.to_host(), r) + (extra_objective ? extra_objective() : 0.0);
    };
    objective();
    store.zero_grads();
    be.fill(dxd.data(), dxd.size(), 0.0f);
    backward(xd.data(), rd.data(), dxd.data());
    const std::vector<float> dx = dxd.to_host();
    if (check_input) check.run("dx", x, dx, [&] { xd.copy_from_host(x); }, objective);
    check.run_parameters(be, store, objective);
  }
};

}  // namespace vmoe::testing
