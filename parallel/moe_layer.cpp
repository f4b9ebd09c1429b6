#include "parallel/moe_layer.h"

#include "core/phase_timer.h"
#include "core/random.h"
#include "core/workspace.h"
#include "parallel/image_router.h"

namespace vmoe {

MoeLayer::MoeLayer(Backend& be, ParamStore& store, const std::string& name,
                   const MoeConfig& config, int dim, int hidden, uint64_t seed, int block)
    : be_(&be),
      config_(&config),
      dim_(dim),
      block_(block),
      own_router_(std::make_unique<Router>(
          be, store, name, dim, config, seed,
          (static_cast<uint64_t>(Stream::kRouterNoise) << 32) | static_cast<uint64_t>(block))),
      experts_(be, store, name + "/experts", config.num_experts, 0, config.num_experts, dim,
               hidden),
      rows_(be),
      expert_begin_(be),
      expert_rows_(be),
      buf_in_(be),
      buf_out_(be) {}

MoeLayer::MoeLayer(Backend& be, ParamStore& store, const std::string& name,
                   const MoeConfig& config, int dim, int hidden, int block, ImageRouter& router)
    : be_(&be),
      config_(&config),
      dim_(dim),
      block_(block),
      image_router_(&router),
      experts_(be, store, name + "/experts", config.num_experts, 0, config.num_experts, dim,
               hidden),
      rows_(be),
      expert_begin_(be),
      expert_rows_(be),
      buf_in_(be),
      buf_out_(be) {}

Router& MoeLayer::router() { return own_router_ ? *own_router_ : image_router_->router(); }

void MoeLayer::forward(const float* x, int64_t images, int tokens, float* y, const Pass& pass) {
  const int64_t groups = images / config_->group_size;
  if (own_router_) {
    PhaseScope timed("routing");
    own_router_->forward(x, groups, config_->group_size * tokens, tokens, pass);
    item_rows_ = 1;
  } else {
    item_rows_ = tokens;  // the image router already decided, per image
  }
  const Router& r = router();
  const RoutingShape& s = r.shape();
  const int64_t items = s.groups * s.items;
  {
    PhaseScope timed("dispatch");
    rows_.resize({items, s.k});
    expert_begin_.resize({s.experts});
    expert_rows_.resize({s.experts});
    be_->moe_buffer_rows(s.groups, s.items, s.k, s.experts, s.capacity, item_rows_,
                         /*compact=*/true, r.expert(), r.slot(), rows_.data(),
                         expert_begin_.data(), expert_rows_.data());
    const std::vector<int64_t> begin = expert_begin_.to_host(), count = expert_rows_.to_host();
    segments_.clear();
    for (int e = 0; e < s.experts; ++e) segments_.push_back({e, begin[e], count[e]});
    buffer_rows_ = begin.back() + count.back();
    // Sized for the most any step can keep, so the buffers never reallocate.
    const int64_t capacity_rows = int64_t{s.experts} * s.groups * s.capacity * item_rows_;
    buf_in_.resize({capacity_rows, dim_});
    buf_out_.resize({capacity_rows, dim_});
    be_->moe_dispatch(items, s.k, item_rows_, dim_, x, rows_.data(), buf_in_.data());
  }
  {
    PhaseScope timed("experts");
    experts_.forward(buf_in_.data(), segments_, buffer_rows_, buf_out_.data());
  }
  PhaseScope timed("combine");
  be_->moe_combine(items, s.k, item_rows_, dim_, buf_out_.data(), rows_.data(), r.gate(), y);
}

void MoeLayer::backward(const float* x, const float* dy, float* dx, Workspace& ws) {
  Router& r = router();
  const RoutingShape& s = r.shape();
  const int64_t items = s.groups * s.items;
  const int64_t capacity_rows = buf_in_.dim(0);
  float* dout = ws.get(Scratch::kExpertOutGrad, {capacity_rows, dim_});
  float* din = ws.get(Scratch::kExpertInGrad, {capacity_rows, dim_});
  {
    PhaseScope timed("combine");
    be_->moe_combine_backward(items, s.k, item_rows_, dim_, dy, buf_out_.data(), rows_.data(),
                              r.gate(), dout, r.d_gate());
  }
  {
    PhaseScope timed("experts");
    experts_.backward(buf_in_.data(), dout, din);
  }
  {
    PhaseScope timed("dispatch");
    be_->moe_dispatch_backward(items, s.k, item_rows_, dim_, din, rows_.data(), dx);
  }
  PhaseScope timed("routing");
  if (own_router_) own_router_->backward(x, dx);
}

void MoeLayer::metrics(std::vector<Metric>& out) {
  if (own_router_) own_router_->metrics("moe/block_" + std::to_string(block_), out);
}

double MoeLayer::flops_per_token(bool training) const {
  const double router = own_router_ ? 2.0 * dim_ * config_->num_experts : 0.0;
  return router + config_->k(training) * experts_.flops_per_row();
}

}  // namespace vmoe
