#include "parallel/moe_model.h"

#include <algorithm>
#include <memory>

#include "parallel/image_router.h"
#include "parallel/moe_layer.h"

namespace vmoe {

ViTExtensions moe_extensions(Backend& be, const MoeConfig& moe, const ViTConfig& vit,
                             uint64_t seed, const ExpertSharding& sharding,
                             MetricStore* metrics) {
  ViTExtensions ext;
  if (!moe.enabled()) return ext;
  const MoeConfig* m = &moe;
  Backend* b = &be;
  const int dim = vit.hidden_size, hidden = vit.mlp_dim;
  // The ViT builds its observer before its blocks; the MoE layers then find it here.
  auto image_router = std::make_shared<ImageRouter*>(nullptr);
  if (moe.routing == Routing::kImage) {
    ext.observer_block = moe.layers.front();
    ext.observer = [=](ParamStore& store) -> std::unique_ptr<StreamObserver> {
      auto router = std::make_unique<ImageRouter>(*b, store, *m, dim, seed, metrics);
      *image_router = router.get();
      return router;
    };
  }
  ext.feed_forward = [=](int block, const std::string& name,
                         ParamStore& store) -> std::unique_ptr<FeedForward> {
    if (!std::binary_search(m->layers.begin(), m->layers.end(), block)) return nullptr;
    if (m->routing == Routing::kImage)
      return std::make_unique<MoeLayer>(*b, store, name, *m, dim, hidden, block, **image_router,
                                        sharding);
    return std::make_unique<MoeLayer>(*b, store, name, *m, dim, hidden, seed, block, sharding,
                                      metrics);
  };
  return ext;
}

std::vector<NamedRouter> named_routers_of(ViT& model) {
  std::vector<NamedRouter> out;
  if (ImageRouter* r = image_router_of(model)) return {{"image_router", &r->router()}};
  for (int b = 0; b < model.num_blocks(); ++b) {
    auto* layer = dynamic_cast<MoeLayer*>(&model.block(b).feed_forward());
    if (layer != nullptr) out.push_back({"block_" + std::to_string(b), &layer->router()});
  }
  return out;
}

std::vector<Router*> routers_of(ViT& model) {
  std::vector<Router*> out;
  for (const NamedRouter& r : named_routers_of(model)) out.push_back(r.router);
  return out;
}

ImageRouter* image_router_of(ViT& model) { return dynamic_cast<ImageRouter*>(model.observer()); }

double moe_forward_flops_per_image(const ViTConfig& vit, const MoeConfig& moe, bool training) {
  const double T = vit.tokens(), D = vit.hidden_size, M = vit.mlp_dim;
  const double dense_mlp = 4.0 * T * D * M;
  const double expert_mlp = moe.k(training) * dense_mlp;
  const double router = moe.routing == Routing::kToken ? 2.0 * T * D * moe.num_experts : 0.0;
  const double per_layer = expert_mlp + router - dense_mlp;
  const double image_router = moe.routing == Routing::kImage ? 2.0 * D * moe.num_experts : 0.0;
  return static_cast<double>(moe.layers.size()) * per_layer + image_router;
}

}  // namespace vmoe
