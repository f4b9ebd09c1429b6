#include "core/vit.h"

#include <optional>

#include "core/check.h"
#include "core/mlp.h"

namespace vmoe {

void validate(const ViTConfig& c) {
  auto positive = [](const char* flag, int64_t v) {
    VMOE_CHECK(v > 0, "--", flag, " must be positive, got ", v);
  };
  positive("patch_size", c.patch_size);
  positive("hidden_size", c.hidden_size);
  positive("num_layers", c.num_layers);
  positive("num_heads", c.num_heads);
  positive("mlp_dim", c.mlp_dim);
  VMOE_CHECK(c.image.height > 0 && c.image.width > 0 && c.image.channels > 0,
             "images must have positive height, width and channels, got ", c.image.height, "x",
             c.image.width, "x", c.image.channels);
  VMOE_CHECK(c.num_classes > 0, "the dataset must have at least one class, got ", c.num_classes);
  VMOE_CHECK(c.image.height % c.patch_size == 0 && c.image.width % c.patch_size == 0,
             "--patch_size=", c.patch_size, " must divide the image size ", c.image.height, "x",
             c.image.width);
  VMOE_CHECK(c.hidden_size % c.num_heads == 0, "--hidden_size=", c.hidden_size,
             " must be divisible by --num_heads=", c.num_heads);
  VMOE_CHECK(c.layernorm_eps > 0.0f, "layernorm epsilon must be positive");
  VMOE_CHECK(c.pre_logits_size >= 0, "--pre_logits_size must be >= 0, got ", c.pre_logits_size);
}

Pooling parse_pooling(const std::string& name) {
  if (name == "token") return Pooling::kToken;
  if (name == "gap") return Pooling::kGap;
  fail("--classifier must be 'token' or 'gap', got '", name, "'");
}

const char* pooling_name(Pooling p) { return p == Pooling::kToken ? "token" : "gap"; }

ViT::ViT(Backend& be, ParamStore& store, const ViTConfig& config, const ViTExtensions& extensions)
    : be_(&be),
      config_((validate(config), config)),
      embedding_(be, store, config.image, config.patch_size, config.hidden_size,
                 config.classifier == Pooling::kToken),
      workspace_(be),
      pool_(be),
      dresid_(be),
      norm_in_(be),
      norm_out_(be),
      norm_mean_(be),
      norm_rstd_(be),
      pooled_(be),
      dpooled_(be),
      dnorm_(be),
      pre_(be),
      dpre_(be),
      pooled16_(be),
      pre16_(be),
      logits_(be) {
  const ViTConfig& c = config_;
  if (extensions.observer) {
    VMOE_ASSERT(extensions.observer_block >= 0 && extensions.observer_block < c.num_layers);
    observer_ = extensions.observer(store);
    observer_block_ = extensions.observer_block;
  }
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string name = "encoder/block_" + std::to_string(l);
    std::unique_ptr<FeedForward> ff;
    if (extensions.feed_forward) ff = extensions.feed_forward(l, name + "/mlp", store);
    if (!ff) ff = std::make_unique<Mlp>(be, store, name + "/mlp", c.hidden_size, c.mlp_dim);
    blocks_.push_back(std::make_unique<TransformerBlock>(be, store, name, c.hidden_size,
                                                         c.num_heads, c.layernorm_eps,
                                                         std::move(ff)));
  }
  norm_ = LayerNorm(store, "encoder/norm", c.hidden_size, c.layernorm_eps);
  // A zero head (as in ViT); multi-label heads start at -10 so the initial
  // sigmoid loss is not dominated by thousands of negatives.
  if (c.pre_logits_size > 0)
    pre_logits_ = Linear(store, "pre_logits", c.hidden_size, c.pre_logits_size);
  head_ = Linear(store, "head", c.feature_size(), c.num_classes,
                 {.kernel = Init::kZeros,
                  .bias_init = c.multi_label ? Init::kConstant : Init::kZeros,
                  .bias_value = c.multi_label ? -10.0f : 0.0f});
  for (int l = 0; l <= c.num_layers; ++l) resid_.emplace_back(be);
  activations_.resize(blocks_.size());
  for (size_t l = 0; l < blocks_.size(); ++l) blocks_[l]->collect_activations(activations_[l]);
}

void ViT::block_forward(int l, const Pass& pass) {
  const int T = config_.tokens();
  TransformerBlock& block = *blocks_[static_cast<size_t>(l)];
  if (!config_.remat) {
    block.forward(resid_[l].data(), batch_, T, resid_[l + 1].data(), pass);
    return;
  }
  // The block's activations are dropped with the loan (its output, the next
  // block's input, is the ViT's).
  const ActivationPool::Loan loan(pool_, activations_[static_cast<size_t>(l)]);
  block.forward(resid_[l].data(), batch_, T, resid_[l + 1].data(), pass);
}

void ViT::forward(const float* images, int64_t batch, const Pass& pass) {
  const ViTConfig& c = config_;
  const int T = c.tokens(), D = c.hidden_size;
  batch_ = batch;
  pass_ = pass;
  for (Tensor& t : resid_) t.resize({batch * T, D});
  embedding_.forward(images, batch, resid_[0].data());
  for (int l = 0; l < c.num_layers; ++l) {
    if (l == observer_block_) observer_->forward(resid_[l].data(), batch, T, pass);
    block_forward(l, pass);
  }

  const float* encoded = resid_.back().data();
  pooled_.resize({batch, D});
  GemmInput pooled = pooled_.data();  // with its bf16 copy under bf16
  if (c.classifier == Pooling::kToken) {
    // LN(x)[:, 0] == LN(x[:, 0]): normalise only the class tokens.
    norm_in_.resize({batch, D});
    norm_mean_.resize({batch});
    norm_rstd_.resize({batch});
    be_->pool_rows(batch, T, D, /*mean=*/false, encoded, norm_in_.data());
    uint16_t* pooled16 = bf16_copy(pooled16_, {batch, D});
    norm_.forward(*be_, norm_in_.data(), batch, pooled_.data(), norm_mean_.data(),
                  norm_rstd_.data(), pooled16);
    pooled.bf16 = pooled16;
  } else {
    norm_out_.resize({batch * T, D});
    norm_mean_.resize({batch * T});
    norm_rstd_.resize({batch * T});
    norm_.forward(*be_, encoded, batch * T, norm_out_.data(), norm_mean_.data(),
                  norm_rstd_.data());
    be_->pool_rows(batch, T, D, /*mean=*/true, norm_out_.data(), pooled_.data());
    pooled = with_bf16_copy(pooled16_, pooled_.data(), {batch, D});
  }
  if (c.pre_logits_size > 0) {
    pre_.resize({batch, c.pre_logits_size});
    pre_logits_.forward(*be_, pooled, batch, pre_.data());
    be_->tanh_forward(batch * c.pre_logits_size, pre_.data());
    with_bf16_copy(pre16_, pre_.data(), {batch, c.pre_logits_size});  // head_input() reads it
  }
  logits_.resize({batch, c.num_classes});
  head_.forward(*be_, head_input(), batch, logits_.data());
}

GemmInput ViT::head_input() {
  if (config_.pre_logits_size > 0) return {pre_.data(), pre16_.data()};
  return {pooled_.data(), pooled16_.data()};
}

void ViT::backward(const float* dlogits) {
  const ViTConfig& c = config_;
  const int T = c.tokens(), D = c.hidden_size;
  const int64_t rows = batch_ * T;
  dpooled_.resize({batch_, D});
  dresid_.resize({rows, D});
  // Each gradient feeds two GEMMs (weights, input): its bf16 copy is shared.
  const GemmInput dy =
      workspace_.shared_input(Scratch::kOutputGrad, dlogits, {batch_, c.num_classes});
  if (c.pre_logits_size > 0) {
    dpre_.resize({batch_, c.pre_logits_size});
    head_.backward(*be_, head_input(), dy, batch_, dpre_.data());
    be_->tanh_backward(batch_ * c.pre_logits_size, pre_.data(), dpre_.data());
    pre_logits_.backward(
        *be_, {pooled_.data(), pooled16_.data()},
        workspace_.shared_input(Scratch::kHiddenGrad, dpre_.data(), {batch_, c.pre_logits_size}),
        batch_, dpooled_.data());
  } else {
    head_.backward(*be_, head_input(), dy, batch_, dpooled_.data());
  }
  be_->fill(dresid_.data(), rows * D, 0.0f);
  // The residual gradient's bf16 copy, where the op that finished it wrote one.
  const uint16_t* dresid16 = nullptr;
  if (c.classifier == Pooling::kToken) {
    dnorm_.resize({batch_, D});
    be_->fill(dnorm_.data(), batch_ * D, 0.0f);
    norm_.backward(*be_, norm_in_.data(), norm_mean_.data(), norm_rstd_.data(), dpooled_.data(),
                   batch_, dnorm_.data());
    be_->pool_rows_backward(batch_, T, D, /*mean=*/false, dnorm_.data(), dresid_.data());
  } else {
    dnorm_.resize({rows, D});
    be_->fill(dnorm_.data(), rows * D, 0.0f);
    be_->pool_rows_backward(batch_, T, D, /*mean=*/true, dpooled_.data(), dnorm_.data());
    uint16_t* copy = workspace_.get_bf16(Scratch::kOutputGrad, {rows, D});
    norm_.backward(*be_, resid_.back().data(), norm_mean_.data(), norm_rstd_.data(), dnorm_.data(),
                   rows, dresid_.data(), copy);
    dresid16 = copy;
  }
  for (int l = c.num_layers - 1; l >= 0; --l) {
    std::optional<ActivationPool::Loan> loan;
    if (c.remat) {
      // Re-run the block's forward into the pool first. It rewrites
      // resid_[l + 1] with the same values (nothing reads it any more). Every
      // rank recomputes its blocks in this same order, so the MoE layers'
      // all-to-alls match up. The image router (observer) is not recomputed:
      // its small state stays for the MoE layers to read.
      Pass again = pass_;
      again.recompute = true;
      loan.emplace(pool_, activations_[static_cast<size_t>(l)]);
      blocks_[l]->forward(resid_[l].data(), batch_, T, resid_[l + 1].data(), again);
    }
    dresid16 = blocks_[l]->backward(resid_[l].data(), dresid_.data(), workspace_, dresid16);
    if (l == observer_block_) {
      observer_->backward(resid_[l].data(), dresid_.data(), workspace_);
      dresid16 = nullptr;  // the observer added to dresid: the copy is stale
    }
  }
  embedding_.backward(dresid_.data());
}

double ViT::aux_loss() const {
  double total = observer_ ? observer_->aux_loss() : 0.0;
  for (const auto& b : blocks_) total += b->feed_forward().aux_loss();
  return total;
}

double ViT::aux_loss_mean() const {
  double total = observer_ ? observer_->aux_loss_mean() : 0.0;
  for (const auto& b : blocks_) total += b->feed_forward().aux_loss_mean();
  return total;
}

void ViT::metrics(std::vector<Metric>& out) {
  if (observer_) observer_->metrics(out);
  for (auto& b : blocks_) b->feed_forward().metrics(out);
}

double vit_forward_flops_per_image(const ViTConfig& c) {
  const double T = c.tokens(), D = c.hidden_size, M = c.mlp_dim;
  const double patch_len = static_cast<double>(c.patch_size) * c.patch_size * c.image.channels;
  const double embed = 2.0 * c.patches() * patch_len * D;
  const double attention = 2.0 * T * D * 3 * D + 2.0 * 2.0 * T * T * D + 2.0 * T * D * D;
  const double mlp = 2.0 * 2.0 * T * D * M;
  const double pre_logits = 2.0 * D * c.pre_logits_size;
  return embed + c.num_layers * (attention + mlp) + pre_logits +
         2.0 * c.feature_size() * c.num_classes;
}

double ViT::forward_flops_per_image() const { return vit_forward_flops_per_image(config_); }

}  // namespace vmoe
