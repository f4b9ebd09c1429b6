#include "launch/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "comm/process_groups.h"
#include "core/check.h"
#include "parallel/moe_model.h"

namespace vmoe {
namespace {

bool is_moe(const MoeConfig& moe, int block) {
  return std::binary_search(moe.layers.begin(), moe.layers.end(), block);
}

int64_t mlp_params(int64_t D, int64_t M) { return 2 * D * M + M + D; }

// Floats of one MoE layer's routing state (token routing), for n items.
double router_floats(double n, double E, double k) { return 6 * n * E + 4 * n * k; }

}  // namespace

int resolve_expert_parallel(int ranks, int experts, int requested) {
  VMOE_CHECK(ranks >= 1, "--ranks must be >= 1, got ", ranks);
  VMOE_CHECK(requested >= 0, "--expert_parallel must be >= 0, got ", requested);
  if (experts <= 0) return 1;
  int p = std::min(requested, ranks);
  if (requested == 0) {
    p = ranks;
    while (p > 1 && (ranks % p != 0 || (experts % p != 0 && p % experts != 0))) --p;
  }
  place_experts(ranks, 0, experts, p);  // throws with the flags' names when impossible
  return p;
}

ParamCounts count_parameters(const ViTConfig& m, const MoeConfig& moe, int expert_parallel) {
  const int64_t D = m.hidden_size, M = m.mlp_dim, E = moe.num_experts;
  const int64_t patch_len = int64_t{m.patch_size} * m.patch_size * m.image.channels;
  ParamCounts c;
  c.dense = patch_len * D + D + (m.classifier == Pooling::kToken ? D : 0) + m.tokens() * D;
  const int64_t expert_layer = E * mlp_params(D, M);
  for (int l = 0; l < m.num_layers; ++l) {
    c.dense += 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D);  // ln1, ln2, qkv, out
    if (is_moe(moe, l)) {
      c.experts += expert_layer;
      if (moe.routing == Routing::kToken) c.dense += D * E;  // router kernel, no bias
    } else {
      c.dense += mlp_params(D, M);
    }
  }
  if (moe.enabled() && moe.routing == Routing::kImage) c.dense += D * E;  // one image router
  c.dense += 2 * D;                                                        // final LayerNorm
  if (m.pre_logits_size > 0) c.dense += D * m.pre_logits_size + m.pre_logits_size;
  c.dense += int64_t{m.feature_size()} * m.num_classes + m.num_classes;  // head
  c.total = c.dense + c.experts;
  if (moe.enabled()) {
    const int P = std::max(1, expert_parallel);
    const int64_t local = P <= E ? E / P : 1;
    c.per_rank_experts = c.experts / E * local;
  }
  c.per_rank = c.dense + c.per_rank_experts;
  return c;
}

double forward_flops_per_image(const ViTConfig& c, const MoeConfig& moe, bool training) {
  const double vit = vit_forward_flops_per_image(c);
  return vit + (moe.enabled() ? moe_forward_flops_per_image(c, moe, training) : 0.0);
}

Plan plan_run(const TrainerOptions& o, const ClusterShape& cluster) {
  const ViTConfig& m = o.model;
  const MoeConfig& moe = o.moe;
  validate(m);
  VMOE_CHECK(cluster.ranks >= 1, "--ranks must be >= 1, got ", cluster.ranks);
  VMOE_CHECK(o.global_batch % cluster.ranks == 0, "--batch_size=", o.global_batch,
             " must be divisible by --ranks=", cluster.ranks);
  VMOE_CHECK(cluster.devices_per_node >= 1, "--devices_per_node must be >= 1");
  VMOE_CHECK(cluster.headroom >= 0 && cluster.headroom < 1, "--headroom must be in [0, 1)");
  Plan p;
  p.ranks = cluster.ranks;
  p.rank_batch = o.global_batch / cluster.ranks;
  validate(moe, m, p.rank_batch);
  p.bf16 = o.precision == Precision::kBf16;
  p.moe_layers = static_cast<int>(moe.layers.size());
  p.expert_parallel = resolve_expert_parallel(cluster.ranks, moe.enabled() ? moe.num_experts : 0,
                                              cluster.expert_parallel);
  const int P = p.expert_parallel;
  if (moe.enabled()) {
    const ExpertPlacement placement = place_experts(cluster.ranks, 0, moe.num_experts, P);
    p.local_experts = placement.local_experts;
    p.expert_world_replicas = placement.world_replicas;
  }
  p.params = count_parameters(m, moe, P);

  p.forward_flops = forward_flops_per_image(m, moe, true);
  p.eval_forward_flops = forward_flops_per_image(m, moe, false);
  p.train_flops = 3 * p.forward_flops;
  p.step_flops_per_rank = p.train_flops * static_cast<double>(p.rank_batch);

  // ---- memory, in floats (4 bytes) unless noted ----
  const double b = static_cast<double>(p.rank_batch), T = m.tokens(), n = b * T;
  const double D = m.hidden_size, M = m.mlp_dim, H = m.num_heads, K = m.num_classes;
  const double Pl = m.pre_logits_size, E = moe.num_experts;
  const double k = moe.num_selected;
  const double Np = m.patches(), patch_len = double{1} * m.patch_size * m.patch_size * m.image.channels;
  const bool token = moe.routing == Routing::kToken;
  double R = 0;  // rows of one MoE layer's fixed expert buffer
  if (moe.enabled()) {
    const int64_t items = token ? int64_t{moe.group_size} * m.tokens() : moe.group_size;
    p.capacity = expert_capacity(moe.num_selected, items, moe.capacity_ratio, moe.num_experts);
    const double groups = b / moe.group_size;
    R = E * groups * p.capacity * (token ? 1.0 : T);
    p.capacity_rows = static_cast<int64_t>(R);
  }
  // Head-major attention (pad > 0) keeps q|k|v as [3, b, H, Tp, hd] and the
  // probabilities as [b, H, Tp, Tp], Tp = T padded to a multiple of pad.
  const int pad = std::max(0, o.attention_pad_to);
  const double Tp = pad > 0 ? std::ceil(T / pad) * pad : T, np = b * Tp;
  const double probs = pad > 0 ? b * H * Tp * Tp : b * H * T * T;
  // Under bf16 a LayerNorm output that only GEMMs read (the first norm; the
  // second before a dense MLP) and the GELU outputs are kept as their copy
  // alone; the second norm before an MoE layer keeps its fp32 values (routed).
  // So are head-major q|k|v and context.
  const double gemm_only = p.bf16 ? 0.0 : 1.0;
  // mid, q|k|v, context, the first norm; the second norm is the sublayer's
  // (+ the block input, in resid); head-major: q|k|v over the padded tokens
  const double attention =
      pad > 0 ? n * D + gemm_only * (3 * np * D + 2 * n * D) : (5 + gemm_only) * n * D;
  // the probabilities (under bf16 their copy alone, counted below)
  double block_common = attention + 4 * n + gemm_only * probs;
  // The GELU's slope: written over fc1's output (fp32), or kept as bf16 alone
  // with that output a temporary (bf16).
  const double slope = p.bf16 ? 0.5 : 1.0;
  // the second norm; the slope, GELU output
  double dense_ff = gemm_only * n * D + (slope + gemm_only) * n * M;
  const double moe_ff = n * D + (token ? router_floats(n, E, k) + n * k : b * k);
  const int dense_blocks = m.num_layers - p.moe_layers;
  double outside = b * m.image.height * m.image.width * m.image.channels  // uploaded images
                   + b * Np * patch_len + b * Np * D                      // patches, projection
                   + n * D                                                // dresid
                   + (m.classifier == Pooling::kToken ? 2 * b * D + 2 * b : 2 * n * D + 2 * n)
                   + 2 * b * D + 2 * b * Pl + 2 * b * K                   // pooled, pre, logits
                   + 2 * b + (m.multi_label ? b * K : b);                 // loss
  if (moe.enabled() && !token) outside += 2 * b * D + 3 * b + b * E + router_floats(b, E, k);
  const double inputs = (m.num_layers + 1) * n * D;
  // bf16: the copies GEMMs read (halves, so half a float each): LN outputs,
  // q|k|v, probabilities and context per block, GELU outputs, the experts'
  // input, GELU output and its gradient, patches and the head's inputs; the
  // workspace's copies of gradients read by two GEMMs.
  const double half = p.bf16 ? 0.5 : 0.0;
  block_common += half * (pad > 0 ? 3 * n * D + 3 * np * D + probs : 6 * n * D + probs);
  dense_ff += half * n * M;
  outside += half * (b * Np * patch_len + b * D + b * Pl);
  const bool exchanges = moe.enabled() && P > 1;
  const bool in_place = exchanges && !p.bf16 && cluster.exchange_in_place;
  // The experts' input and output buffers (in shared memory: two windows of
  // the layer's own, counted with the exchange, below); the slope, GELU
  // output and its gradient (bf16: their copies alone).
  const double per_moe_capacity =
      (in_place ? 0.0 : 2 * R * D) + (slope + 2 * gemm_only) * R * M + half * (R * D + 2 * R * M);
  // fp32: send, back, received and to-return buffers, or in shared memory
  // the layer's two windows (kept with remat too) and two gradient windows
  // that serve every layer (in place of the scratch's two); bf16: back and
  // the two payloads of R*D halves (only the payload is written to send;
  // received data is transposed as bf16).
  const double per_moe_exchange = !exchanges ? 0.0
                                  : p.bf16   ? 2 * R * D
                                  : in_place ? 0.0
                                             : 4 * R * D;
  const double per_moe_windows = in_place ? 2 * R * D : 0.0;
  const double exchange_windows = in_place ? 2 * R * D : 0.0;
  // the dense MLP's hidden gradient: under bf16 its copy alone
  double scratch =
      (5 * n * D + probs + (moe.enabled() && !in_place ? 2 * R * D : 0.0)) * (1 + half) +
      (dense_blocks > 0 ? n * M * (gemm_only + half) : 0.0);
  // Head-major: the packed gradients of the context (and its copy) and of
  // q|k|v, the forward's temporaries (the projection before packing, the
  // packed context) held in the cache; under bf16 the q|k|v gradient in
  // rows is its copy alone.
  if (pad > 0)
    scratch += np * D * (1 + half) + 3 * np * D + 3 * n * D + np * D - (p.bf16 ? 3 * n * D : 0.0);
  // bf16: fc1's output (written as bf16) and the attention's scores,
  // temporaries of forward held in the cache.
  if (p.bf16)
    scratch += half * ((dense_blocks > 0 ? n * M : 0.0) + (moe.enabled() ? R * M : 0.0)) + probs;
  const double S = static_cast<double>(p.params.per_rank);

  MemoryBreakdown& a = p.memory;
  a.parameters = (4 + 4 * half) * S;  // bf16: the weights' copy, 2 bytes each
  a.gradients = 4 * S;
  a.optimizer = (o.optimizer.kind == OptimizerKind::kAdam ? 8 : 4) * S;
  a.activations = 4 * (outside + inputs + m.num_layers * block_common + dense_blocks * dense_ff +
                       p.moe_layers * moe_ff);
  a.capacity = 4 * p.moe_layers * per_moe_capacity;
  a.exchange = 4 * (p.moe_layers * (per_moe_exchange + per_moe_windows) + exchange_windows);
  a.scratch = 4 * scratch;
  const double largest_region =
      std::max(static_cast<double>(p.params.dense), static_cast<double>(p.params.per_rank_experts));
  a.allreduce = cluster.ranks > 1
                    ? 4 * std::min(static_cast<double>(o.allreduce_bucket_floats), largest_region)
                    : 0.0;
  // bf16: the one GEMM input still converted inside its GEMM (the patch
  // projection's gradient), in a temporary on the GPU.
  if (p.bf16) a.bf16_staging = 2 * b * Np * D;

  MemoryBreakdown& r = p.memory_remat;
  r = a;
  const double largest_ff = std::max(dense_blocks > 0 ? dense_ff : 0.0,
                                     p.moe_layers > 0 ? moe_ff : 0.0);
  r.activations = 4 * (outside + inputs + block_common + largest_ff);
  r.capacity = p.moe_layers > 0 ? 4 * per_moe_capacity : 0.0;
  r.exchange = p.moe_layers > 0
                   ? 4 * (per_moe_exchange + p.moe_layers * per_moe_windows + exchange_windows)
                   : 0.0;

  p.headroom = cluster.headroom;
  p.device_bytes = cluster.device_memory_gib * double(1 << 30);
  p.usable_bytes = p.device_bytes * (1 - cluster.headroom);
  p.margin = p.usable_bytes - a.total();
  p.margin_remat = p.usable_bytes - r.total();
  p.fits = p.margin >= 0;
  p.fits_remat = p.margin_remat >= 0;

  // ---- communication per step ----
  if (exchanges) {
    const double payload = R * D * (p.bf16 ? 2 : 4);  // one all-to-all's buffer, bytes
    const double per_peer = payload / P;
    // Peers of rank 0's EP group (ranks 0..P-1) on other nodes, averaged over the group.
    double remote_peers = 0;
    for (int j = 0; j < P; ++j)
      for (int q = 0; q < P; ++q)
        remote_peers += (j / cluster.devices_per_node != q / cluster.devices_per_node);
    remote_peers /= P;
    p.all_to_all_bytes = 4.0 * p.moe_layers * per_peer * (P - 1);
    p.all_to_all_inter_node_bytes = 4.0 * p.moe_layers * per_peer * remote_peers;
  }
  auto ring = [](double bytes, int size) { return size > 1 ? 2.0 * (size - 1) / size * bytes : 0.0; };
  p.allreduce_bytes = ring(4.0 * static_cast<double>(p.params.dense), cluster.ranks) +
                      ring(4.0 * static_cast<double>(p.params.per_rank_experts),
                           p.expert_world_replicas);
  return p;
}

namespace {

std::string printf_string(const char* format, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

constexpr double kGiB = double(1 << 30);

std::string fits_text(bool fits, double margin) {
  std::string s = fits ? "yes" : "no";
  s += printf_string(" (%s %.1f GiB)", fits ? "margin" : "short by", std::abs(margin) / kGiB);
  return s;
}

}  // namespace

std::string format_plan(const Plan& p, const std::string& title) {
  std::string out;
  out += "vmoe_plan: " + title + "\n";
  out += printf_string("layout: %d ranks, %lld images per rank", p.ranks,
                       static_cast<long long>(p.rank_batch));
  if (p.moe_layers > 0) {
    out += printf_string(", %d MoE layers, expert_parallel %d (%d expert(s) per layer per rank, "
                         "%d cop%s of each), capacity %d slots per expert per group",
                         p.moe_layers, p.expert_parallel, p.local_experts, p.expert_world_replicas,
                         p.expert_world_replicas == 1 ? "y" : "ies", p.capacity);
  }
  out += p.bf16 ? ", bf16\n" : ", fp32\n";
  auto millions = [](int64_t v) { return printf_string("%.1fM", static_cast<double>(v) / 1e6); };
  out += "\nparameters\n";
  out += "  total                  " + millions(p.params.total) + "\n";
  out += "  dense                  " + millions(p.params.dense) + "\n";
  out += "  experts                " + millions(p.params.experts) + "\n";
  out += "  per rank               " + millions(p.params.per_rank) + " (" +
         millions(p.params.per_rank_experts) + " of experts)\n";
  out += "\nFLOPs (matrix products)\n";
  out += printf_string("  forward per image      %.2f GFLOP (training k), %.2f (evaluation k)\n",
                       p.forward_flops / 1e9, p.eval_forward_flops / 1e9);
  out += printf_string("  training per image     %.2f GFLOP (3x forward)\n", p.train_flops / 1e9);
  out += printf_string("  training step per rank %.2f TFLOP\n", p.step_flops_per_rank / 1e12);
  out += "\nmemory per rank (GiB)  as implemented   with remat\n";
  const MemoryBreakdown &a = p.memory, &r = p.memory_remat;
  auto row = [&](const char* name, double x, double y) {
    out += printf_string("  %-22s %9.2f %14.2f\n", name, x / kGiB, y / kGiB);
  };
  row(p.bf16 ? "parameters (+bf16)" : "parameters (fp32)", a.parameters, r.parameters);
  row("gradients (fp32)", a.gradients, r.gradients);
  row("optimizer state", a.optimizer, r.optimizer);
  row("activations", a.activations, r.activations);
  row("capacity buffers", a.capacity, r.capacity);
  row("exchange buffers", a.exchange, r.exchange);
  row("backward scratch", a.scratch, r.scratch);
  row("all-reduce bucket", a.allreduce, r.allreduce);
  if (p.bf16) row("bf16 GEMM staging", a.bf16_staging, r.bf16_staging);
  row("total", a.total(), r.total());
  out += printf_string("  device %.1f GiB, %.0f%% headroom: %.1f GiB usable\n",
                       p.device_bytes / kGiB, p.headroom * 100, p.usable_bytes / kGiB);
  out += "  fits                   " + fits_text(p.fits, p.margin) + "; with remat " +
         fits_text(p.fits_remat, p.margin_remat) + "\n";
  out += "\ncommunication per step per rank\n";
  out += printf_string("  all-to-all             %.2f GB sent (%.2f GB to other nodes)\n",
                       p.all_to_all_bytes / 1e9, p.all_to_all_inter_node_bytes / 1e9);
  out += printf_string("  gradient all-reduce    %.2f GB sent (ring)\n", p.allreduce_bytes / 1e9);
  return out;
}

std::string plan_json(const Plan& p, const std::string& title) {
  std::string out = "{\n";
  auto field = [&](const char* name, double v, bool integer = false) {
    out += printf_string(integer ? "  \"%s\": %.0f,\n" : "  \"%s\": %.6g,\n", name, v);
  };
  std::string escaped;
  for (char c : title) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  out += "  \"config\": \"" + escaped + "\",\n";
  out += std::string("  \"precision\": \"") + (p.bf16 ? "bf16" : "fp32") + "\",\n";
  field("ranks", p.ranks, true);
  field("rank_batch", static_cast<double>(p.rank_batch), true);
  field("moe_layers", p.moe_layers, true);
  field("expert_parallel", p.expert_parallel, true);
  field("local_experts", p.local_experts, true);
  field("expert_world_replicas", p.expert_world_replicas, true);
  field("capacity", p.capacity, true);
  field("capacity_rows", static_cast<double>(p.capacity_rows), true);
  field("params_total", static_cast<double>(p.params.total), true);
  field("params_dense", static_cast<double>(p.params.dense), true);
  field("params_experts", static_cast<double>(p.params.experts), true);
  field("params_per_rank", static_cast<double>(p.params.per_rank), true);
  field("params_per_rank_experts", static_cast<double>(p.params.per_rank_experts), true);
  field("forward_flops_per_image", p.forward_flops);
  field("eval_forward_flops_per_image", p.eval_forward_flops);
  field("train_flops_per_image", p.train_flops);
  field("step_flops_per_rank", p.step_flops_per_rank);
  for (const auto& [prefix, m] : {std::pair{"memory", &p.memory}, {"memory_remat", &p.memory_remat}}) {
    const std::pair<const char*, double> items[] = {
        {"parameters", m->parameters}, {"gradients", m->gradients}, {"optimizer", m->optimizer},
        {"activations", m->activations}, {"capacity", m->capacity}, {"exchange", m->exchange},
        {"scratch", m->scratch}, {"allreduce", m->allreduce}, {"bf16_staging", m->bf16_staging},
        {"total", m->total()}};
    for (const auto& [name, v] : items) {
      std::string key = prefix;
      key += "_";
      key += name;
      key += "_bytes";
      field(key.c_str(), v, true);
    }
  }
  field("device_bytes", p.device_bytes, true);
  field("usable_bytes", p.usable_bytes, true);
  field("headroom", p.headroom);
  out += std::string("  \"fits\": ") + (p.fits ? "true" : "false") + ",\n";
  out += std::string("  \"fits_remat\": ") + (p.fits_remat ? "true" : "false") + ",\n";
  field("margin_bytes", p.margin, true);
  field("margin_remat_bytes", p.margin_remat, true);
  field("all_to_all_bytes_per_step", p.all_to_all_bytes, true);
  field("all_to_all_inter_node_bytes_per_step", p.all_to_all_inter_node_bytes, true);
  field("allreduce_bytes_per_step", p.allreduce_bytes, true);
  out.erase(out.size() - 2);  // the last ",\n"
  out += "\n}\n";
  return out;
}

}  // namespace vmoe
