#include "parallel/moe_config.h"

#include <cmath>
#include <sstream>

#include "core/check.h"
#include "core/vit_config.h"

namespace vmoe {
namespace {

int parse_int(const std::string& text, const std::string& spec) {
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  VMOE_CHECK(used == text.size() && !text.empty(), "--moe_layers='", spec,
             "': expected every:N, last:N or a list of block indices, found '", text, "'");
  return v;
}

}  // namespace

std::vector<int> parse_moe_layers(const std::string& spec, int num_layers) {
  std::vector<int> out;
  if (spec.empty() || spec == "none") return out;
  auto every = [&](int n) {
    std::vector<int> blocks;
    for (int b = n - 1; b < num_layers; b += n) blocks.push_back(b);
    return blocks;
  };
  if (spec.rfind("every:", 0) == 0) {
    const int n = parse_int(spec.substr(6), spec);
    VMOE_CHECK(n >= 1, "--moe_layers=", spec, ": N must be >= 1");
    out = every(n);
  } else if (spec.rfind("last:", 0) == 0) {
    const int n = parse_int(spec.substr(5), spec);
    const std::vector<int> odd = every(2);
    VMOE_CHECK(n >= 1 && n <= static_cast<int>(odd.size()), "--moe_layers=", spec,
               ": N must be in [1, ", odd.size(), "] (the every-2 blocks of --num_layers=",
               num_layers, ")");
    out.assign(odd.end() - n, odd.end());
  } else {
    std::stringstream in(spec);
    std::string item;
    while (std::getline(in, item, ',')) {
      const int b = parse_int(item, spec);
      VMOE_CHECK(b >= 0 && b < num_layers, "--moe_layers=", spec, ": block ", b,
                 " is outside [0, ", num_layers, ")");
      VMOE_CHECK(out.empty() || b > out.back(), "--moe_layers=", spec,
                 ": blocks must be strictly increasing");
      out.push_back(b);
    }
  }
  VMOE_CHECK(!out.empty(), "--moe_layers=", spec, " selects no block of --num_layers=",
             num_layers);
  return out;
}

std::string format_moe_layers(const std::vector<int>& layers) {
  std::string out;
  for (int b : layers) {
    if (!out.empty()) out += ',';
    out += std::to_string(b);
  }
  return out.empty() ? "none" : out;
}

int expert_capacity(int k, int64_t items, double ratio, int experts) {
  const double raw = std::ceil(static_cast<double>(k) * items * ratio / experts);
  VMOE_CHECK(raw >= 1, "expert capacity ceil(k * S * ratio / E) = ceil(", k, " * ", items, " * ",
             ratio, " / ", experts, ") = ", raw, " is below 1: raise the capacity ratio");
  const int64_t c = static_cast<int64_t>(raw);
  return static_cast<int>((c + 3) / 4 * 4);
}

void validate(const MoeConfig& m, const ViTConfig& vit, int64_t rank_batch) {
  if (!m.enabled()) return;
  VMOE_CHECK(m.num_experts >= 1, "--num_experts must be >= 1, got ", m.num_experts);
  for (auto [flag, k] : {std::pair{"num_selected", m.num_selected},
                         std::pair{"eval_num_selected", m.eval_num_selected}}) {
    VMOE_CHECK(k >= 1 && k <= m.num_experts, "--", flag, "=", k,
               " must be in [1, --num_experts=", m.num_experts, "]");
  }
  VMOE_CHECK(m.group_size >= 1, "--group_size must be >= 1, got ", m.group_size);
  VMOE_CHECK(rank_batch % m.group_size == 0, "the per-rank batch (", rank_batch,
             " images) must be a multiple of --group_size=", m.group_size);
  for (auto [flag, r] : {std::pair{"capacity_ratio", m.capacity_ratio},
                         std::pair{"eval_capacity_ratio", m.eval_capacity_ratio}}) {
    VMOE_CHECK(r > 0, "--", flag, " must be positive, got ", r);
  }
  VMOE_CHECK(m.noise_std >= 0, "--router_noise_std must be >= 0, got ", m.noise_std);
  VMOE_CHECK(m.layers.back() < vit.num_layers, "--moe_layers: block ", m.layers.back(),
             " is beyond --num_layers=", vit.num_layers);
  const int64_t items =
      m.routing == Routing::kToken ? int64_t{m.group_size} * vit.tokens() : m.group_size;
  expert_capacity(m.num_selected, items, m.capacity_ratio, m.num_experts);
  expert_capacity(m.eval_num_selected, items, m.eval_capacity_ratio, m.num_experts);
  if (m.routing == Routing::kImage) {
    VMOE_CHECK(m.router_input == RouterInput::kMean || vit.classifier == Pooling::kToken,
               "--image_router_input=token needs --classifier=token (a class token)");
  }
}

Routing parse_routing(const std::string& name) {
  if (name == "token") return Routing::kToken;
  if (name == "image") return Routing::kImage;
  fail("--routing must be 'token' or 'image', got '", name, "'");
}

RouterInput parse_router_input(const std::string& name) {
  if (name == "mean") return RouterInput::kMean;
  if (name == "token") return RouterInput::kToken;
  fail("--image_router_input must be 'mean' or 'token', got '", name, "'");
}

}  // namespace vmoe
