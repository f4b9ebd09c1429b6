#include "core/optimizer.h"

#include "core/check.h"

namespace vmoe {

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "adam") return OptimizerKind::kAdam;
  if (name == "sgd") return OptimizerKind::kSgd;
  fail("--optimizer must be 'adam' or 'sgd', got '", name, "'");
}

Optimizer::Optimizer(const OptimizerConfig& config, ParamStore& store)
    : config_(config), store_(&store), be_(&store.values().backend()) {
  VMOE_ASSERT(store.allocated());
  const int buffers = config.kind == OptimizerKind::kAdam ? 2 : 1;
  for (int i = 0; i < buffers; ++i) state_.push_back(store.make_like());
}

void Optimizer::step(float lr) {
  ++step_;
  for (ParamId id = 0; id < store_->count(); ++id) {
    const int64_t n = store_->numel(id);
    const int64_t off = store_->offset(id);
    const float wd = store_->spec(id).weight_decay ? config_.weight_decay : 0.0f;
    if (config_.kind == OptimizerKind::kAdam) {
      be_->adam_update(n, lr, config_.beta1, config_.beta2, config_.eps, wd, step_,
                       store_->grad(id), store_->value(id), store_->value_bf16(id),
                       state_[0].data() + off, state_[1].data() + off);
    } else {
      be_->sgd_update(n, lr, config_.momentum, wd, store_->grad(id), store_->value(id),
                      store_->value_bf16(id), state_[0].data() + off);
    }
  }
}

}  // namespace vmoe
