// Mixture-of-experts settings of a model, validated, plus the placement and
// capacity rules (the V-MoE paper, Riquelme et al. 2021, arXiv 2106.05974,
// and google-research/vmoe, vmoe/moe.py):
//   placement "every:N" = blocks N-1, 2N-1, ... (0-based); "last:N" = the last
//   N of the every-2 blocks; or an explicit list "1,3,5";
//   capacity per expert per group C = ceil(k * S * ratio / E), an error when
//   < 1, then rounded up to a multiple of 4 (S = items in a group).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmoe {

struct ViTConfig;

enum class Routing { kToken, kImage };
enum class RouterInput { kMean, kToken };  // image router: mean of the tokens, or the class token

struct MoeConfig {
  std::vector<int> layers;  // blocks whose MLP is a mixture of experts, ascending
  int num_experts = 8;
  int num_selected = 2;     // k
  int group_size = 8;       // images per routing group
  double capacity_ratio = 1.05;
  bool batch_priority = true;
  // Evaluation may route differently without retraining.
  double eval_capacity_ratio = 1.05;
  int eval_num_selected = 2;
  bool eval_batch_priority = true;
  float noise_std = 1.0f;   // router noise std is noise_std / E
  float importance_loss_weight = 0.005f;
  float load_loss_weight = 0.005f;
  float gshard_loss_weight = 0.0f;
  float z_loss_weight = 0.0f;
  Routing routing = Routing::kToken;
  RouterInput router_input = RouterInput::kMean;
  float superclass_loss_weight = 0.0f;  // image routing: CE(router logits, super-class)

  bool enabled() const { return !layers.empty(); }
  int k(bool training) const { return training ? num_selected : eval_num_selected; }
  double ratio(bool training) const { return training ? capacity_ratio : eval_capacity_ratio; }
  bool bpr(bool training) const { return training ? batch_priority : eval_batch_priority; }
};

// Parses --moe_layers for a model of num_layers blocks ("" = none).
std::vector<int> parse_moe_layers(const std::string& spec, int num_layers);
std::string format_moe_layers(const std::vector<int>& layers);

// C = ceil(k * items * ratio / experts) rounded up to a multiple of 4.
int expert_capacity(int k, int64_t items, double ratio, int experts);

// Checks every setting against the model and the per-rank batch (which must
// hold whole groups); errors name the flag.
void validate(const MoeConfig& moe, const ViTConfig& vit, int64_t rank_batch);

Routing parse_routing(const std::string& name);        // "token" | "image"
RouterInput parse_router_input(const std::string& name);  // "mean" | "token"

}  // namespace vmoe
