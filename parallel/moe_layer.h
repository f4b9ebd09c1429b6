// A sparse mixture-of-experts sublayer: route (fixed capacity per expert per
// group), dispatch the kept items into expert buffers, run the experts,
// combine y = sum over kept choices of gate * expert output. Dropped choices
// add nothing (the block's residual carries the token). Buffers have the fixed
// layout [E, groups, capacity, item rows, D], empty slots zero, so every shape
// is known before the step and nothing is read on the host: the experts
// compute their capacity, empty slots included (parallel/experts.h). Where the
// backend sizes GEMMs on the host (the CPU), each expert's kept rows come
// first in each part a rank receives, and nothing zeroes or reads the rest.
//
// Token routing (V-MoE): the layer's own router routes each token within
// groups of group_size images. Image routing (Mobile V-MoE): the model's
// ImageRouter chose experts per image; whole images (T rows) fill the slots.
#pragma once

#include <memory>
#include <string>

#include "comm/process_groups.h"
#include "core/feed_forward.h"
#include "core/metric_store.h"
#include "parallel/expert_exchange.h"
#include "parallel/experts.h"
#include "parallel/router.h"

namespace vmoe {

class ImageRouter;

// Where a layer's experts live: all on this rank (ep == null), or spread over
// the expert-parallel communicator as `placement` says.
struct ExpertSharding {
  ExpertPlacement placement;
  Communicator* ep = nullptr;
  // The EP group's shared buffers (ProcessGroups::expert_peer_buffers());
  // null: the exchanges are all-to-alls.
  PeerBuffers* peers = nullptr;
};

class MoeLayer final : public FeedForward {
 public:
  // Token routing; `block` names the layer in metrics and keys its router
  // noise; the router's training metrics go to `metrics` (null: its own).
  MoeLayer(Backend& be, ParamStore& store, const std::string& name, const MoeConfig& config,
           int dim, int hidden, uint64_t seed, int block, const ExpertSharding& sharding = {},
           MetricStore* metrics = nullptr);
  // Image routing: follows `router`, which runs before this layer.
  MoeLayer(Backend& be, ParamStore& store, const std::string& name, const MoeConfig& config,
           int dim, int hidden, int block, ImageRouter& router,
           const ExpertSharding& sharding = {});

  void forward(GemmInput x, int64_t images, int tokens, float* y, const Pass& pass) override;
  void backward(GemmInput x, GemmInput dy, float* dx, Workspace& ws) override;
  double aux_loss() const override { return own_router_ ? own_router_->aux_loss() : 0.0; }
  double aux_loss_mean() const override {
    return own_router_ ? own_router_->aux_loss_mean() : 0.0;
  }
  void metrics(std::vector<Metric>& out) override;
  void collect_activations(ActivationSet& set) override;

  Router& router();
  // The experts' input, with the bf16 copy the exchange received (bf16 only).
  GemmInput expert_input() const;
  bool exchanges() const { return exchange_ != nullptr; }
  // Whether the last forward's exchanges ran in place (shared memory): its
  // backward's do too.
  bool in_place() const { return exchange_ && exchange_->in_place(); }
  ExpertMlps& experts() { return experts_; }
  // Matrix-product FLOPs per token: router plus k experts.
  double flops_per_token(bool training) const;

 private:
  // The experts' outputs, each (item, choice)'s at its row (rows_).
  const float* combined() const;
  // Not in place: x into the experts' input buffer (buf_in_), through the
  // exchange where there is one.
  void dispatch(const float* x, int64_t items, int64_t capacity_rows);
  // Not in place: backward's combine, experts and dispatch into dx.
  void experts_backward(const float* dy, int64_t items, float* dx, Workspace& ws);
  MoeLayer(Backend& be, ParamStore& store, const std::string& name, const MoeConfig& config,
           int dim, int hidden, int block, const ExpertSharding& sharding, ImageRouter* router);

  Backend* be_;
  const MoeConfig* config_;
  int dim_, block_;
  std::unique_ptr<Router> own_router_;
  ImageRouter* image_router_ = nullptr;
  ExpertMlps experts_;
  std::unique_ptr<ExpertExchange> exchange_;  // null: every expert is local
  int item_rows_ = 1;
  IntTensor rows_;           // buffer row of each (item, choice)
  IntTensor live_;           // packed buffers: each expert part's kept rows
  IntTensor live_in_;        // and with an exchange, those the local experts got
  Tensor buf_in_, buf_out_;  // the experts' input and output, expert-major (not in place)
  Bf16Tensor buf_in16_;      // exchange under bf16: the input's bf16 copy, as received
  Tensor send_, back_;       // exchange only: the fixed layout, sent and returned
};

}  // namespace vmoe
