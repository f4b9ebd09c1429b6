#include "parallel/moe_layer.h"

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
      buf_in_(be),
      buf_out_(be) {}

Router& MoeLayer::router() { return own_router_ ? *own_router_ : image_router_->router(); }

void MoeLayer::forward(const float* x, int64_t images, int tokens, float* y, const Pass& pass) {
  const int64_t groups = images / config_->group_size;
  if (own_router_) {
    own_router_->forward(x, groups, config_->group_size * tokens, tokens, pass);
    item_rows_ = 1;
  } else {
    item_rows_ = tokens;  // the image router already decided, per image
  }
  const Router& r = router();
  const RoutingShape& s = r.shape();
  const int64_t rows = s.groups * s.capacity * item_rows_;  // per expert
  buf_in_.resize({s.experts, rows, dim_});
  buf_out_.resize({s.experts, rows, dim_});
  be_->moe_dispatch(s.groups, s.items, s.k, s.experts, s.capacity, item_rows_, dim_, x, r.expert(),
                    r.slot(), buf_in_.data());
  experts_.forward(buf_in_.data(), 1, rows, buf_out_.data());
  be_->moe_combine(s.groups, s.items, s.k, s.experts, s.capacity, item_rows_, dim_,
                   buf_out_.data(), r.expert(), r.slot(), r.gate(), y);
}

void MoeLayer::backward(const float* x, const float* dy, float* dx, Workspace& ws) {
  Router& r = router();
  const RoutingShape& s = r.shape();
  const int64_t rows = s.groups * s.capacity * item_rows_;
  float* dout = ws.get(Scratch::kExpertOutGrad, {s.experts, rows, dim_});
  float* din = ws.get(Scratch::kExpertInGrad, {s.experts, rows, dim_});
  be_->moe_combine_backward(s.groups, s.items, s.k, s.experts, s.capacity, item_rows_, dim_, dy,
                            buf_out_.data(), r.expert(), r.slot(), r.gate(), dout, r.d_gate());
  experts_.backward(buf_in_.data(), dout, din);
  be_->moe_dispatch_backward(s.groups, s.items, s.k, s.experts, s.capacity, item_rows_, dim_, din,
                             r.expert(), r.slot(), dx);
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
