#include "core/optimizer.h"

#include "core/check.h"

namespace vmoe {

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "adam") return OptimizerKind::kAdam;
  if (name == "sgd") return OptimizerKind::kSgd;
  fail("--optimizer must be 'adam' or 'sgd', got '", name, "'");
}

Optimizer::Optimizer(const OptimizerConfig& config, ParamStore& store)
    : config_(config),
      store_(&store),
      be_(&store.values().backend()),
      device_step_(*be_, {1}),
      scalars_(*be_, {1}) {
  VMOE_ASSERT(store.allocated());
  const int buffers = config.kind == OptimizerKind::kAdam ? 2 : 1;
  for (int i = 0; i < buffers; ++i) state_.push_back(store.make_like());
  be_->zero(device_step_.data(), sizeof(int64_t));
}

void Optimizer::set_steps_taken(int64_t s) {
  step_ = s;
  device_step_.copy_from_host(&s, 1);
}

void Optimizer::queue_update(const LrSchedule& schedule, const float* grad_scale) {
  be_->begin_update(schedule, config_.beta1, config_.beta2, grad_scale, device_step_.data(),
                    scalars_.data());
  const UpdateScalars* s = scalars_.data();
  for (ParamId id = 0; id < store_->count(); ++id) {
    const int64_t n = store_->numel(id);
    const int64_t off = store_->offset(id);
    const float wd = store_->spec(id).weight_decay ? config_.weight_decay : 0.0f;
    if (config_.kind == OptimizerKind::kAdam) {
      be_->adam_update(n, config_.beta1, config_.beta2, config_.eps, wd, s, store_->grad(id),
                       store_->value(id), store_->value_bf16(id), state_[0].data() + off,
                       state_[1].data() + off);
    } else {
      be_->sgd_update(n, config_.momentum, wd, s, store_->grad(id), store_->value(id),
                      store_->value_bf16(id), state_[0].data() + off);
    }
  }
}

}  // namespace vmoe
