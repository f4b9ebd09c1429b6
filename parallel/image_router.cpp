#include "parallel/image_router.h"

#include "core/check.h"
#include "core/random.h"

namespace vmoe {

ImageRouter::ImageRouter(Backend& be, ParamStore& store, const MoeConfig& config, int dim,
                         uint64_t seed)
    : be_(&be),
      config_(&config),
      dim_(dim),
      router_(be, store, "encoder/image_router", dim, config, seed,
              (static_cast<uint64_t>(Stream::kRouterNoise) << 32) | 0xFFFFu),
      rep_(be),
      drep_(be),
      ones_(be),
      row_loss_(be),
      d_logits_(be),
      labels_(be) {}

void ImageRouter::set_superclass(const int32_t* labels, int64_t images, const uint8_t* mask) {
  host_labels_.assign(labels, labels + images);
  if (mask != nullptr) {
    host_mask_.assign(mask, mask + images);
  } else {
    host_mask_.assign(static_cast<size_t>(images), 1);
  }
  for (int64_t i = 0; i < images; ++i) {
    if (!host_mask_[static_cast<size_t>(i)]) continue;
    VMOE_CHECK(labels[i] >= 0 && labels[i] < config_->num_experts, "super-class ", labels[i],
               " of a training image is outside [0, --num_experts=", config_->num_experts,
               "): the image router needs one super-class per expert");
  }
}

void ImageRouter::forward(const float* x, int64_t images, int tokens, const Pass& pass) {
  images_ = images;
  tokens_ = tokens;
  training_ = pass.training;
  rep_.resize({images, dim_});
  be_->pool_rows(images, tokens, dim_, config_->router_input == RouterInput::kMean, x,
                 rep_.data());
  router_.forward(rep_.data(), images / config_->group_size, config_->group_size, 1, pass);

  superclass_loss_ = 0;
  superclass_active_ = false;
  hits_ = 0;
  const int E = config_->num_experts;
  const bool have_labels = host_labels_.size() == static_cast<size_t>(images);
  VMOE_CHECK(have_labels || !(pass.training && config_->superclass_loss_weight > 0),
             "the super-class loss needs /superclass labels for every training image");
  if (!have_labels) return;
  // Accuracy of the router's top choice (clean logits) against the super-class.
  host_logits_.resize(static_cast<size_t>(images * E));
  be_->copy_to_host(host_logits_.data(), router_.logits(), host_logits_.size() * sizeof(float));
  hits_ = 0;
  for (int64_t i = 0; i < images; ++i) {
    if (!host_mask_[static_cast<size_t>(i)]) continue;
    int best = 0;
    for (int e = 1; e < E; ++e)
      if (host_logits_[i * E + e] > host_logits_[i * E + best]) best = e;
    hits_ += best == host_labels_[static_cast<size_t>(i)];
  }
  if (pass.training) {
    sum_hits_ += static_cast<double>(hits_);
    sum_images_ += static_cast<double>(images);
  }
  if (!pass.training || config_->superclass_loss_weight <= 0) {
    host_labels_.clear();  // labels serve one forward
    return;
  }
  const int64_t global = pass.global_images > 0 ? pass.global_images : images;
  labels_.resize({images});
  labels_.copy_from_host(host_labels_);
  ones_.resize({images});
  be_->fill(ones_.data(), images, 1.0f);
  row_loss_.resize({images});
  d_logits_.resize({images, E});
  const float w = config_->superclass_loss_weight;
  be_->softmax_cross_entropy(images, E, router_.logits(), labels_.data(), ones_.data(),
                             w / static_cast<float>(global), row_loss_.data(), d_logits_.data());
  double sum = 0;
  for (float v : row_loss_.to_host()) sum += v;
  superclass_loss_ = w * sum / static_cast<double>(global);
  sum_loss_ += sum / static_cast<double>(images);
  ++loss_steps_;
  superclass_active_ = true;
  host_labels_.clear();
}

void ImageRouter::backward(const float* x, float* dx, Workspace& /*ws*/) {
  (void)x;  // the pooled representation was kept in forward
  drep_.resize({images_, dim_});
  be_->fill(drep_.data(), images_ * dim_, 0.0f);
  router_.backward(rep_.data(), drep_.data(), superclass_active_ ? d_logits_.data() : nullptr);
  be_->pool_rows_backward(images_, tokens_, dim_, config_->router_input == RouterInput::kMean,
                          drep_.data(), dx);
}

void ImageRouter::metrics(std::vector<Metric>& out) {
  router_.metrics("moe/image_router", out);
  if (sum_images_ > 0)
    out.push_back({"moe/image_router/superclass_accuracy", sum_hits_ / sum_images_});
  if (loss_steps_ > 0)
    out.push_back({"moe/image_router/superclass_loss", sum_loss_ / loss_steps_});
  sum_loss_ = sum_hits_ = sum_images_ = 0;
  loss_steps_ = 0;
}

}  // namespace vmoe
