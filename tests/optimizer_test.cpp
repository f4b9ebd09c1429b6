// Optimisers over the parameter store, gradient clipping and the schedule.
#include <gtest/gtest.h>

#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/optimizer.h"
#include "core/schedule.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

TEST(Schedule, WarmupThenLinearDecay) {
  LrSchedule s{.base = 1.0, .end = 0.1, .warmup_steps = 4, .total_steps = 14, .decay = Decay::kLinear};
  EXPECT_DOUBLE_EQ(s.at(0), 0.25);
  EXPECT_DOUBLE_EQ(s.at(3), 1.0);
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);
  EXPECT_NEAR(s.at(9), 0.55, 1e-12);
  EXPECT_NEAR(s.at(14), 0.1, 1e-12);
  EXPECT_NEAR(s.at(100), 0.1, 1e-12);
}

TEST(Schedule, Cosine) {
  LrSchedule s{.base = 2.0, .end = 0.0, .warmup_steps = 0, .total_steps = 10, .decay = Decay::kCosine};
  EXPECT_DOUBLE_EQ(s.at(0), 2.0);
  EXPECT_NEAR(s.at(5), 1.0, 1e-12);
  EXPECT_NEAR(s.at(10), 0.0, 1e-12);
  EXPECT_THROW(parse_decay("exp"), Error);
}

struct TwoParams {
  CpuBackend be;
  ParamStore store;
  ParamId kernel, bias;
  TwoParams() {
    kernel = store.add({.name = "k", .shape = {3}, .init = Init::kOnes, .weight_decay = true});
    bias = store.add({.name = "b", .shape = {2}, .init = Init::kOnes});
    store.allocate(be);
    store.initialize(0);
  }
  std::vector<float> get(ParamId id) {
    std::vector<float> v(store.numel(id));
    be.copy_to_host(v.data(), store.value(id), v.size() * sizeof(float));
    return v;
  }
};

TEST(Optimizer, WeightDecayOnlyOnKernels) {
  TwoParams p;
  Optimizer opt({.kind = OptimizerKind::kAdam, .weight_decay = 0.5f}, p.store);
  p.store.zero_grads();  // zero gradient: only weight decay moves a parameter
  opt.step(0.1f);
  for (float v : p.get(p.kernel)) EXPECT_NEAR(v, 1.0f - 0.1f * 0.5f, 1e-7);
  for (float v : p.get(p.bias)) EXPECT_EQ(v, 1.0f);
  EXPECT_EQ(opt.steps_taken(), 1);
}

TEST(Optimizer, SgdMomentumOverTheStore) {
  TwoParams p;
  Optimizer opt({.kind = OptimizerKind::kSgd, .momentum = 0.5f}, p.store);
  p.be.fill(p.store.grads().data(), p.store.size(), 2.0f);
  opt.step(0.1f);
  opt.step(0.1f);
  // buf: 2, then 3; p = 1 - 0.2 - 0.3
  for (float v : p.get(p.bias)) EXPECT_NEAR(v, 0.5f, 1e-6);
  ASSERT_EQ(opt.state().size(), 1u);
}

// The rate and step live where the update runs: the device counter follows
// the steps (and a resume), the rate is the schedule's at each step, and a
// step with a schedule equals a step at that constant rate.
TEST(Optimizer, StepCounterAndRateOnTheDevice) {
  const LrSchedule schedule{
      .base = 0.2, .end = 0.0, .warmup_steps = 2, .total_steps = 6, .decay = Decay::kCosine};
  TwoParams a, b;
  Optimizer with_schedule({.kind = OptimizerKind::kAdam, .weight_decay = 0.5f}, a.store);
  Optimizer at_constant({.kind = OptimizerKind::kAdam, .weight_decay = 0.5f}, b.store);
  for (int step = 0; step < 4; ++step) {
    for (TwoParams* p : {&a, &b}) p->be.fill(p->store.grads().data(), p->store.size(), 0.5f);
    with_schedule.step(schedule);
    at_constant.step(static_cast<float>(schedule.at(step)));
    EXPECT_EQ(*with_schedule.device_step(), step + 1);  // host memory on the CPU
    EXPECT_EQ(a.get(a.kernel), b.get(b.kernel)) << "step " << step;
  }
  with_schedule.set_steps_taken(11);
  EXPECT_EQ(with_schedule.steps_taken(), 11);
  EXPECT_EQ(*with_schedule.device_step(), 11);
}

TEST(Optimizer, ClipByGlobalNorm) {
  TwoParams p;
  p.be.fill(p.store.grads().data(), p.store.size(), 0.0f);
  std::vector<float> g = {3, 0, 0};
  p.be.copy_to_device(p.store.grad(p.kernel), g.data(), 12);
  std::vector<float> gb = {4, 0};
  p.be.copy_to_device(p.store.grad(p.bias), gb.data(), 8);
  EXPECT_DOUBLE_EQ(testing::sum_squares(p.be, p.store.size(), p.store.grads().data()), 25.0);
  EXPECT_DOUBLE_EQ(testing::clip_gradients(p.store, 1.0f), 5.0);
  EXPECT_NEAR(testing::sum_squares(p.be, p.store.size(), p.store.grads().data()), 1.0, 1e-6);
  const std::vector<float> clipped = p.store.grads().to_host();
  EXPECT_NEAR(testing::clip_gradients(p.store, 2.0f), 1.0, 1e-6);  // below: unchanged
  EXPECT_EQ(p.store.grads().to_host(), clipped);
  // The expert part counts each copy of a replicated expert once; 0 = no clipping.
  DeviceTensor<double> sq(p.be, {2}), norm(p.be, {1});
  Tensor factor(p.be, {1});
  const double squares[2] = {9.0, 32.0};  // dense 9; experts 16, held by 2 ranks each
  p.be.copy_to_device(sq.data(), squares, sizeof squares);
  p.be.clip_scale(sq.data(), 2.0, 1.0f, norm.data(), factor.data());
  EXPECT_DOUBLE_EQ(norm.to_host()[0], 5.0);
  EXPECT_FLOAT_EQ(factor.to_host()[0], 0.2f);
  p.be.clip_scale(sq.data(), 2.0, 0.0f, norm.data(), factor.data());
  EXPECT_FLOAT_EQ(factor.to_host()[0], 1.0f);
}

// The trainer's clipping: the factor applied by the update as it reads each
// gradient gives the same bits as clipping the gradients first, for both
// optimisers; a null factor is no clipping.
TEST(Optimizer, ClippingInTheUpdateEqualsClippingFirst) {
  const LrSchedule schedule{.base = 0.05, .warmup_steps = 1, .total_steps = 5};
  for (OptimizerKind kind : {OptimizerKind::kAdam, OptimizerKind::kSgd}) {
    TwoParams first, in_update;
    const OptimizerConfig config{.kind = kind, .momentum = 0.7f, .weight_decay = 0.3f};
    Optimizer a(config, first.store), b(config, in_update.store);
    for (int step = 0; step < 3; ++step) {
      const std::vector<float> g = testing::random_normal(5, 20 + step, 3.0f);
      for (TwoParams* p : {&first, &in_update}) p->store.grads().copy_from_host(g);
      testing::clip_gradients(first.store, 1.0f);
      a.step(schedule);
      DeviceTensor<double> sq(in_update.be, {2}), norm(in_update.be, {1});
      Tensor factor(in_update.be, {1});
      in_update.be.sum_squares(5, in_update.store.grads().data(), sq.data());
      in_update.be.zero(sq.data() + 1, sizeof(double));
      in_update.be.clip_scale(sq.data(), 1.0, 1.0f, norm.data(), factor.data());
      ASSERT_LT(factor.to_host()[0], 1.0f);  // clipped
      b.queue_update(schedule, factor.data());
      b.count_step();
      for (ParamId id : {first.kernel, first.bias})
        ASSERT_EQ(first.get(id), in_update.get(id)) << "step " << step;
    }
  }
  TwoParams plain, null_factor;
  Optimizer a({}, plain.store), b({}, null_factor.store);
  for (TwoParams* p : {&plain, &null_factor}) p->be.fill(p->store.grads().data(), 5, 4.0f);
  a.step(0.1f);
  b.queue_update(LrSchedule{.base = 0.1, .decay = Decay::kConstant}, nullptr);
  EXPECT_EQ(plain.get(plain.kernel), null_factor.get(null_factor.kernel));
}

TEST(ParamStore, RegionsAndSlicedInitialisation) {
  CpuBackend be;
  ParamStore store;
  store.add({.name = "expert/w", .shape = {4, 3}, .init = Init::kNormal, .init_value = 1.0f,
             .region = Region::kExpert, .global_offset = 0, .global_rows = 4});
  store.add({.name = "dense", .shape = {5}, .init = Init::kOnes});
  store.allocate(be);
  EXPECT_EQ(store.region_begin(Region::kExpert), store.region_end(Region::kDense));
  EXPECT_EQ(store.offset(*store.find("dense")), 0);
  EXPECT_EQ(store.num_parameters(Region::kExpert), 12);
  EXPECT_EQ(store.offset(*store.find("expert/w")) % 16, 0);
  // The slice of rows [2, 4) initialises exactly like rows 2..3 of the whole.
  ParamSpec whole{.name = "expert/w", .shape = {4, 3}, .init = Init::kNormal, .init_value = 1.0f};
  ParamSpec part = whole;
  part.shape = {2, 3};
  part.global_offset = 2;
  const std::vector<float> a = initial_values(whole, 9), b = initial_values(part, 9);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a[6 + i], b[i]);
  EXPECT_NE(initial_values(whole, 10)[0], a[0]);
  EXPECT_THROW(store.find("nope").value(), std::bad_optional_access);
}

}  // namespace
}  // namespace vmoe
