#include "parallel/moe_layer.h"

#include "core/phase_timer.h"
#include "core/random.h"
#include "core/workspace.h"
#include "parallel/image_router.h"

namespace vmoe {

namespace {

ExpertPlacement local_placement(const MoeConfig& c, const ExpertSharding& s) {
  if (s.ep != nullptr) return s.placement;
  ExpertPlacement p;
  p.experts = p.local_experts = c.num_experts;
  return p;
}

}  // namespace

MoeLayer::MoeLayer(Backend& be, ParamStore& store, const std::string& name,
                   const MoeConfig& config, int dim, int hidden, uint64_t seed, int block,
                   const ExpertSharding& sharding, MetricStore* metrics)
    : MoeLayer(be, store, name, config, dim, hidden, block, sharding, nullptr) {
  // Router parameters come after the experts' in registration order; names, not order, matter.
  own_router_ = std::make_unique<Router>(
      be, store, name, dim, config, seed,
      (static_cast<uint64_t>(Stream::kRouterNoise) << 32) | static_cast<uint64_t>(block), metrics);
}

MoeLayer::MoeLayer(Backend& be, ParamStore& store, const std::string& name,
                   const MoeConfig& config, int dim, int hidden, int block, ImageRouter& router,
                   const ExpertSharding& sharding)
    : MoeLayer(be, store, name, config, dim, hidden, block, sharding, &router) {}

MoeLayer::MoeLayer(Backend& be, ParamStore& store, const std::string& name, const MoeConfig& config,
                   int dim, int hidden, int block, const ExpertSharding& sharding,
                   ImageRouter* router)
    : be_(&be),
      config_(&config),
      dim_(dim),
      block_(block),
      image_router_(router),
      experts_(be, store, name + "/experts", config.num_experts,
               local_placement(config, sharding).first_expert,
               local_placement(config, sharding).local_experts, dim, hidden),
      rows_(be),
      live_(be),
      live_in_(be),
      buf_in_(be),
      buf_out_(be),
      buf_in16_(be),
      send_(be),
      back_(be) {
  if (sharding.ep != nullptr && sharding.placement.ep_size > 1)
    exchange_ = std::make_unique<ExpertExchange>(be, *sharding.ep, sharding.placement,
                                                 sharding.peers, block);
}

GemmInput MoeLayer::expert_input() const {
  if (in_place()) return {exchange_->mine(ExpertExchange::kIn), nullptr};  // fp32 only
  // Under bf16 the dispatch (or the exchange) wrote the copy with the values.
  return {buf_in_.data(), bf16_copy(buf_in16_)};
}

const float* MoeLayer::combined() const {
  return in_place()  ? exchange_->span(ExpertExchange::kOut)
         : exchange_ ? back_.data()
                     : buf_out_.data();
}

Router& MoeLayer::router() { return own_router_ ? *own_router_ : image_router_->router(); }

void MoeLayer::forward(GemmInput input, int64_t images, int tokens, float* y, const Pass& pass) {
  const float* x = input.f32;  // routed and dispatched in fp32
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
  // Every slot of every expert: the shape never depends on the routing.
  const int64_t capacity_rows = int64_t{s.experts} * s.groups * s.capacity * item_rows_;
  // In shared memory the exchanges read and write the experts' buffers where
  // they lie (parallel/expert_exchange.h): this layer keeps none of its own.
  if (exchange_) exchange_->begin(s.groups, s.capacity, item_rows_, dim_);
  buf_in_.resize({in_place() ? 0 : capacity_rows, dim_});
  buf_out_.resize({in_place() ? 0 : capacity_rows, dim_});
  rows_.resize({items, s.k});
  // Packed: each expert's kept rows first in each part an expert-parallel
  // rank receives, and its GEMMs skip the empty rest (where the backend
  // sizes them on the host).
  const bool packed = be_->skips_empty_slots();
  const int parts = exchange_ ? exchange_->parts_per_expert() : 1;
  {
    PhaseScope timed("dispatch");
    if (packed) {
      live_.resize({int64_t{s.experts} * parts});
      be_->moe_packed_buffer_rows(s.groups, s.items, s.k, s.experts, parts, s.capacity, item_rows_,
                                  r.expert(), r.slot(), rows_.data(), live_.data());
      if (exchange_) {  // the counts travel: the experts compute only kept rows
        live_in_.resize({exchange_->sources(), experts_.local_experts()});
        exchange_->exchange_live(live_.data(), live_in_.data());
      }
    } else {
      be_->moe_buffer_rows(s.groups, s.items, s.k, s.experts, s.capacity, item_rows_, r.expert(),
                           r.slot(), rows_.data());
    }
    if (in_place()) {
      // Each kept row straight into its expert rank's buffer.
      exchange_->to_span_rows(rows_.data(), items * s.k);
      if (!packed) exchange_->zero_sent(ExpertExchange::kIn);
      be_->moe_dispatch(items, s.k, item_rows_, dim_, x, rows_.data(),
                        exchange_->span(ExpertExchange::kIn), nullptr);
      exchange_->publish("exchange_wait.dispatch");
    } else {
      dispatch(x, items, capacity_rows);
    }
  }
  {
    PhaseScope timed("experts");
    const int64_t rows = exchange_ ? exchange_->expert_rows()
                                   : s.groups * int64_t{s.capacity} * item_rows_;
    const int32_t* live = !packed ? nullptr : exchange_ ? live_in_.data() : live_.data();
    float* out = in_place() ? exchange_->mine(ExpertExchange::kOut) : buf_out_.data();
    experts_.forward(expert_input(), rows, out, live, exchange_ ? exchange_->sources() : 1);
  }
  PhaseScope timed("combine");
  if (in_place()) {
    exchange_->publish("exchange_wait.experts");
  } else if (exchange_) {
    exchange_->combine(buf_out_.data(), back_.data());
  }
  be_->moe_combine(items, s.k, item_rows_, dim_, combined(), rows_.data(), r.gate(), y);
}

void MoeLayer::dispatch(const float* x, int64_t items, int64_t capacity_rows) {
  const RoutingShape& s = router().shape();
  const size_t buffer_bytes = static_cast<size_t>(capacity_rows * dim_) * sizeof(float);
  float* fixed = buf_in_.data();
  // Under bf16 the dispatch writes the bf16 copy too (no conversion pass):
  // of the buffer the experts read, or of the exchange's payload (then only
  // the copy travels: no fp32 layout is written).
  uint16_t* fixed16 = nullptr;
  if (exchange_) {
    back_.resize({capacity_rows, dim_});
    fixed16 = exchange_->payload16(capacity_rows * dim_);
    fixed = nullptr;
    if (fixed16 == nullptr) {
      send_.resize({capacity_rows, dim_});
      fixed = send_.data();
    }
  } else {
    fixed16 = bf16_copy(buf_in16_, {capacity_rows, dim_});
  }
  // Empty slots: zeros (parallel/experts.h); packed buffers' are never read.
  if (!be_->skips_empty_slots()) {
    if (fixed != nullptr) be_->zero(fixed, buffer_bytes);
    if (fixed16 != nullptr) be_->zero(fixed16, buffer_bytes / 2);
  }
  be_->moe_dispatch(items, s.k, item_rows_, dim_, x, rows_.data(), fixed, fixed16);
  if (exchange_)
    exchange_->dispatch(fixed, buf_in_.data(), bf16_copy(buf_in16_, {capacity_rows, dim_}));
}

void MoeLayer::backward(GemmInput input, GemmInput dy_in, float* dx, Workspace& ws) {
  const float* dy = dy_in.f32;  // the combine reads fp32; GEMMs read dy only through it
  Router& r = router();
  const RoutingShape& s = r.shape();
  const int64_t items = s.groups * s.items;
  if (in_place()) {
    using B = ExpertExchange;
    {
      PhaseScope timed("combine");
      // Each kept row's gradient straight into its expert rank's buffer.
      if (!be_->skips_empty_slots()) exchange_->zero_sent(B::kOutGrad);
      be_->moe_combine_backward(items, s.k, item_rows_, dim_, dy, combined(), rows_.data(),
                                r.gate(), exchange_->span(B::kOutGrad), r.d_gate(), nullptr);
      exchange_->publish("exchange_wait.combine_backward");
    }
    {
      PhaseScope timed("experts");
      experts_.backward(expert_input(), {exchange_->mine(B::kOutGrad), nullptr},
                        exchange_->mine(B::kInGrad), ws);
    }
    {
      PhaseScope timed("dispatch");
      exchange_->publish("exchange_wait.experts_backward");
      be_->moe_dispatch_backward(items, s.k, item_rows_, dim_, exchange_->span(B::kInGrad),
                                 rows_.data(), dx);
    }
  } else {
    experts_backward(dy, items, dx, ws);
  }
  PhaseScope timed("routing");
  if (own_router_) own_router_->backward(input.f32, dx);
}

void MoeLayer::experts_backward(const float* dy, int64_t items, float* dx, Workspace& ws) {
  Router& r = router();
  const RoutingShape& s = r.shape();
  const int64_t capacity_rows = buf_in_.dim(0);
  // Two scratch buffers take turns: (combine) out-grad -> (experts) in-grad.
  float* a = ws.get(Scratch::kExpertOutGrad, {capacity_rows, dim_});
  float* b = ws.get(Scratch::kExpertInGrad, {capacity_rows, dim_});
  // dL/d expert output's bf16 copy: written by the combine's backward without
  // an exchange, as received from one with it.
  uint16_t* dout16 = nullptr;
  float* dback = a;  // dL/d combined, in the fixed layout (null: its bf16 copy alone)
  {
    PhaseScope timed("combine");
    // Empty slots get a zero gradient, so they add nothing to the experts'
    // (packed buffers: the experts read no row past the kept ones).
    const bool packed = be_->skips_empty_slots();
    const size_t bytes = static_cast<size_t>(capacity_rows * dim_) * sizeof(float);
    // Under bf16 its copy is written with it: the experts' input of it, or
    // the exchange's payload (then only the copy travels).
    uint16_t* a16 = exchange_ ? exchange_->payload16(capacity_rows * dim_)
                              : ws.get_bf16(Scratch::kExpertOutGrad, {capacity_rows, dim_});
    if (exchange_ && a16 != nullptr) dback = nullptr;
    if (!packed && dback != nullptr) be_->zero(dback, bytes);
    if (a16 != nullptr && !packed) be_->zero(a16, bytes / 2);
    if (!exchange_) dout16 = a16;
    be_->moe_combine_backward(items, s.k, item_rows_, dim_, dy, combined(), rows_.data(), r.gate(),
                              dback, r.d_gate(), a16);
  }
  float* dout = exchange_ ? b : a;  // dL/d expert output, expert-major
  float* din = exchange_ ? a : b;   // dL/d expert input, expert-major
  if (exchange_) {
    PhaseScope timed("combine");
    dout16 = ws.get_bf16(Scratch::kExpertOutGrad, {capacity_rows, dim_});
    exchange_->combine_backward(dback, b, dout16);
  }
  {
    PhaseScope timed("experts");
    experts_.backward(expert_input(), {dout, dout16}, din, ws);
  }
  PhaseScope timed("dispatch");
  if (exchange_) exchange_->dispatch_backward(din, dout);  // dout is free again
  be_->moe_dispatch_backward(items, s.k, item_rows_, dim_, exchange_ ? dout : din, rows_.data(),
                             dx);
}

void MoeLayer::collect_activations(ActivationSet& set) {
  // The experts' hidden activations first: the largest, they then share pool
  // storage with a dense MLP's (core/activation_pool.h).
  experts_.collect_activations(set);
  set.add(buf_in_, buf_out_, send_, back_, rows_, live_, live_in_);
  set.add(buf_in16_);
  if (own_router_) own_router_->collect_activations(set);
  if (exchange_) exchange_->collect_activations(set);
}

void MoeLayer::metrics(std::vector<Metric>& out) {
  if (own_router_) own_router_->metrics("moe/block_" + std::to_string(block_), out);
}

double MoeLayer::flops_per_token(bool training) const {
  const double router = own_router_ ? 2.0 * dim_ * config_->num_experts : 0.0;
  return router + config_->k(training) * experts_.flops_per_row();
}

}  // namespace vmoe
