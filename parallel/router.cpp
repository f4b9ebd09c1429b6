#include "parallel/router.h"

#include "core/activation_pool.h"
#include "core/check.h"
#include "core/fp32_scope.h"

namespace vmoe {

Router::Router(Backend& be, ParamStore& store, const std::string& name, int dim,
               const MoeConfig& config, uint64_t seed, uint64_t stream, MetricStore* metrics)
    : be_(&be),
      store_(&store),
      config_(&config),
      seed_(seed),
      stream_(stream),
      dim_(dim),
      logits_(be),
      noisy_(be),
      probs_(be),
      noisy_probs_(be),
      d_logits_(be),
      aux_d_logits_(be),
      group_losses_(be),
      expert_(be),
      slot_(be),
      gate_(be),
      d_gate_(be),
      counts_(be),
      metrics_(metrics) {
  kernel_ = store.add({.name = name + "/router/kernel",
                       .shape = {dim, config.num_experts},
                       .init = Init::kXavierUniform,
                       .fan_in = dim,
                       .fan_out = config.num_experts,
                       .weight_decay = true});
  counts_.resize({config.num_experts + 1});
  reset_counts();
  loss_sums_ = metrics_->add(4);
  choices_ = metrics_->add(config.num_experts + 1);
  metrics_.ready(be);
}

void Router::collect_activations(ActivationSet& set) {
  // Not group_losses_: aux_loss() reads it after backward, and it is tiny.
  set.add(logits_, noisy_, probs_, noisy_probs_, d_logits_, aux_d_logits_, gate_, d_gate_);
  set.add(expert_, slot_);
}

void Router::reset_counts() {
  be_->zero(counts_.data(), static_cast<size_t>(counts_.size()) * sizeof(int64_t));
}

void Router::forward(const float* x, int64_t groups, int items, int items_per_image,
                     const Pass& pass) {
  const MoeConfig& c = *config_;
  const int E = c.num_experts, k = c.k(pass.training);
  const int64_t n = groups * items;
  training_ = pass.training;
  const Fp32Scope fp32(*be_);  // routing decisions stay fp32 under mixed precision
  shape_ = {groups, items, k, E, expert_capacity(k, items, c.ratio(pass.training), E)};
  for (Tensor* t : {&logits_, &noisy_probs_, &d_logits_}) t->resize({n, E});
  for (Tensor* t : {&gate_, &d_gate_}) t->resize({n, k});
  expert_.resize({n, k});
  slot_.resize({n, k});

  be_->gemm(Trans::kNo, Trans::kNo, static_cast<int>(n), E, dim_, 1.0f, x, dim_,
            store_->value(kernel_), E, 0.0f, logits_.data(), E);
  const float sigma = c.noise_std / static_cast<float>(E);
  const bool noisy = pass.training && sigma > 0.0f;
  const float* routed = logits_.data();
  if (noisy) {
    // Noise keyed by the item's global position in the global batch and the step.
    const int64_t rank_items = n / items_per_image;  // images here
    const int64_t global_items =
        (pass.global_images > 0 ? pass.global_images : rank_items) * items_per_image;
    // Counter (step * global_items + first item) * E, the step's part read on the device.
    const uint64_t per_step = static_cast<uint64_t>(global_items) * E;
    const uint64_t here = static_cast<uint64_t>(pass.first_image * items_per_image) * E;
    noisy_.resize({n, E});
    be_->copy(noisy_.data(), logits_.data(), n * E * sizeof(float));
    // The host's step where no device counter is given (tests driving a layer).
    const uint64_t first =
        pass.device_step != nullptr ? here : here + static_cast<uint64_t>(pass.step) * per_step;
    be_->add_normal_noise(n * E, sigma, seed_, stream_, first, pass.device_step, per_step,
                          noisy_.data());
    routed = noisy_.data();
  }
  be_->copy(noisy_probs_.data(), routed, n * E * sizeof(float));
  be_->softmax_forward(n, E, 1.0f, noisy_probs_.data());
  be_->top_k(n, E, k, noisy_probs_.data(), expert_.data(), gate_.data());
  be_->assign_slots(groups, items, k, E, shape_.capacity, c.bpr(pass.training), expert_.data(),
                    gate_.data(), pass.image_mask, items_per_image, slot_.data());
  if (!pass.recompute)  // a recompute routes the same choices again: count them once
    be_->count_assignments(n, k, E, expert_.data(), slot_.data(), pass.image_mask,
                           items_per_image,
                           pass.training ? metrics_->counts(choices_) : counts_.data());
  be_->fill(d_gate_.data(), n * k, 0.0f);

  if (!pass.recompute) aux_valid_ = false;
  if (!pass.training) return;
  probs_.resize({n, E});
  aux_d_logits_.resize({n, E});
  group_losses_.resize({groups, 4});
  be_->copy(probs_.data(), logits_.data(), n * E * sizeof(float));
  be_->softmax_forward(n, E, 1.0f, probs_.data());
  be_->fill(aux_d_logits_.data(), n * E, 0.0f);
  const int64_t global_groups =
      pass.global_images > 0 ? pass.global_images / c.group_size : groups;
  RouterAuxArgs a;
  a.groups = groups;
  a.items = items;
  a.experts = E;
  a.k = k;
  a.sigma = noisy ? sigma : 0.0f;
  a.logits = logits_.data();
  a.noisy_logits = routed;
  a.probs = probs_.data();
  a.noisy_probs = noisy_probs_.data();
  a.top_index = expert_.data();
  a.importance_weight = c.importance_loss_weight;
  a.load_weight = c.load_loss_weight;
  a.gshard_weight = c.gshard_loss_weight;
  a.z_weight = c.z_loss_weight;
  a.grad_scale = 1.0f / static_cast<float>(global_groups);
  a.group_losses = group_losses_.data();
  a.d_logits = aux_d_logits_.data();
  be_->router_aux_losses(a);
  // A recompute needs only the losses' gradient: their values (the same) and
  // metrics were taken by the first forward.
  if (pass.recompute) return;
  be_->accumulate_columns(groups, 4, group_losses_.data(), 1.0, metrics_->sums(loss_sums_));
  aux_valid_ = true;
  groups_ = groups;
  global_groups_ = global_groups;
  ++train_forwards_;
}

namespace {

// The objective's weights of the importance, load, GShard and z losses.
std::vector<double> loss_weights(const MoeConfig& c) {
  return {c.importance_loss_weight, c.load_loss_weight, c.gshard_loss_weight, c.z_loss_weight};
}

}  // namespace

double Router::aux_loss() const {
  if (!aux_valid_) return 0.0;
  // The objective averages per-group losses over the global groups (this rank's share).
  const std::vector<float> losses = group_losses_.to_host();
  const std::vector<double> w = loss_weights(*config_);
  double total = 0.0;
  for (int64_t g = 0; g < groups_; ++g)
    for (int j = 0; j < 4; ++j)
      total += w[static_cast<size_t>(j)] * losses[static_cast<size_t>(g * 4 + j)] /
               static_cast<double>(global_groups_);
  return total;
}

double Router::aux_loss_mean() const {
  if (train_forwards_ == 0) return 0.0;
  const std::vector<double> w = loss_weights(*config_);
  double total = 0.0;
  for (int j = 0; j < 4; ++j)
    total += w[static_cast<size_t>(j)] * metrics_->host_sum(loss_sums_, j);
  return total / static_cast<double>(global_groups_) / static_cast<double>(train_forwards_);
}

void Router::backward(const float* x, float* dx, const float* extra_d_logits) {
  const Fp32Scope fp32(*be_);
  const int E = shape_.experts;
  const int64_t n = shape_.groups * shape_.items;
  float* d = d_logits_.data();
  be_->fill(d, n * E, 0.0f);
  be_->top_k_backward(n, E, shape_.k, expert_.data(), d_gate_.data(), d);
  be_->softmax_backward(n, E, 1.0f, noisy_probs_.data(), d);  // the noise is a constant
  if (training_) be_->axpy(n * E, 1.0f, aux_d_logits_.data(), d);
  if (extra_d_logits != nullptr) be_->axpy(n * E, 1.0f, extra_d_logits, d);
  be_->gemm(Trans::kYes, Trans::kNo, dim_, E, static_cast<int>(n), 1.0f, x, dim_, d, E, 1.0f,
            store_->grad(kernel_), E);
  be_->gemm(Trans::kNo, Trans::kYes, static_cast<int>(n), dim_, E, 1.0f, d, E,
            store_->value(kernel_), E, 1.0f, dx, dim_);
}

void Router::metrics(const std::string& prefix, std::vector<Metric>& out) {
  const MoeConfig& c = *config_;
  metrics_.begin_read();
  if (train_forwards_ > 0) {
    // Means over this rank's groups, then over the training forwards.
    const double per = static_cast<double>(groups_) * static_cast<double>(train_forwards_);
    const char* names[4] = {"importance_loss", "load_loss", "gshard_loss", "z_loss"};
    for (int j = 0; j < 4; ++j) {
      if (j == 1 && c.noise_std <= 0.0f) continue;
      out.push_back({prefix + "/" + names[j], metrics_->host_sum(loss_sums_, j) / per});
    }
  }
  int64_t total = 0;
  for (int e = 0; e < c.num_experts; ++e) total += metrics_->host_count(choices_, e);
  if (total > 0) {
    const double dropped = static_cast<double>(metrics_->host_count(choices_, c.num_experts));
    out.push_back({prefix + "/dropped", dropped / total});
    for (int e = 0; e < c.num_experts; ++e) {
      out.push_back({prefix + "/load_e" + std::to_string(e),
                     static_cast<double>(metrics_->host_count(choices_, e)) / total});
    }
  }
  metrics_.end_read();
  train_forwards_ = 0;
}

}  // namespace vmoe
