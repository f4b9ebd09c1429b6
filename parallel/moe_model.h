// Turns a ViT into a V-MoE (token routing) or a Mobile V-MoE (image routing):
// the ViTExtensions that put MoeLayers in the chosen blocks and, for image
// routing, the ImageRouter at the input of the first of them.
#pragma once

#include <string>
#include <vector>

#include "core/vit.h"
#include "parallel/moe_config.h"
#include "parallel/moe_layer.h"

namespace vmoe {

// `moe` must outlive the model. Empty extensions for a dense model. The
// default sharding keeps every expert on this rank. The routers' training
// metrics go to `metrics` (null: each router keeps its own).
ViTExtensions moe_extensions(Backend& be, const MoeConfig& moe, const ViTConfig& vit,
                             uint64_t seed, const ExpertSharding& sharding = {},
                             MetricStore* metrics = nullptr);

class Router;
class ImageRouter;

// Every router of a model: the image router, or one per MoE layer.
std::vector<Router*> routers_of(ViT& model);
// The same, named as in the metrics: "image_router" or "block_<b>".
struct NamedRouter {
  std::string name;
  Router* router;
};
std::vector<NamedRouter> named_routers_of(ViT& model);
// The model's image router, or null.
ImageRouter* image_router_of(ViT& model);

// Matrix-product FLOPs of one forward pass per image, counting k experts per
// routed token (what the model computes, not the capacity padding).
double moe_forward_flops_per_image(const ViTConfig& vit, const MoeConfig& moe, bool training);

}  // namespace vmoe
