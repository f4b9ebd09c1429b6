#include "parallel/image_router.h"

#include "core/check.h"
#include "core/random.h"

namespace vmoe {

ImageRouter::ImageRouter(Backend& be, ParamStore& store, const MoeConfig& config, int dim,
                         uint64_t seed, MetricStore* metrics)
    : be_(&be),
      config_(&config),
      dim_(dim),
      metrics_(metrics),
      router_(be, store, "encoder/image_router", dim, config, seed,
              (static_cast<uint64_t>(Stream::kRouterNoise) << 32) | 0xFFFFu, metrics_.get()),
      rep_(be),
      drep_(be),
      ones_(be),
      row_loss_(be),
      d_logits_(be),
      mask_(be),
      labels_(be),
      eval_hits_(be, {1}) {
  loss_sum_ = metrics_->add(1);
  hits_ = metrics_->add(1);
  metrics_.ready(be);
}

void ImageRouter::set_superclass(const int32_t* labels, int64_t images, const uint8_t* mask) {
  std::vector<float> host_mask(static_cast<size_t>(images), 1.0f);
  for (int64_t i = 0; i < images; ++i) {
    if (mask != nullptr && !mask[i]) {
      host_mask[static_cast<size_t>(i)] = 0.0f;
      continue;
    }
    VMOE_CHECK(labels[i] >= 0 && labels[i] < config_->num_experts, "super-class ", labels[i],
               " of a training image is outside [0, --num_experts=", config_->num_experts,
               "): the image router needs one super-class per expert");
  }
  labels_.resize({images});
  labels_.copy_from_host(labels, images);
  masked_ = mask != nullptr;
  if (masked_) {
    mask_.resize({images});
    mask_.copy_from_host(host_mask);
  }
  labels_ready_ = true;
}

void ImageRouter::forward(const float* x, int64_t images, int tokens, const Pass& pass) {
  images_ = images;
  tokens_ = tokens;
  rep_.resize({images, dim_});
  be_->pool_rows(images, tokens, dim_, config_->router_input == RouterInput::kMean, x, rep_.data());
  router_.forward(rep_.data(), images / config_->group_size, config_->group_size, 1, pass);
  if (pass.recompute) return;  // the image router is not recomputed (core/vit.cpp)
  superclass_active_ = false;
  const int E = config_->num_experts;
  const bool have_labels = labels_ready_ && labels_.size() == images;
  VMOE_CHECK(have_labels || !(pass.training && config_->superclass_loss_weight > 0),
             "the super-class loss needs /superclass labels for every training image");
  if (!pass.training) be_->zero(eval_hits_.data(), sizeof(int64_t));
  if (!have_labels) return;
  labels_ready_ = false;  // labels serve one forward
  // Accuracy of the router's top choice (clean logits) against the super-class.
  be_->count_top1_hits(images, E, router_.logits(), labels_.data(),
                       masked_ ? mask_.data() : nullptr,
                       pass.training ? metrics_->counts(hits_) : eval_hits_.data());
  if (!pass.training) return;
  train_images_ += images;
  if (config_->superclass_loss_weight <= 0) return;
  const int64_t global = pass.global_images > 0 ? pass.global_images : images;
  ones_.resize({images});
  be_->fill(ones_.data(), images, 1.0f);
  row_loss_.resize({images});
  d_logits_.resize({images, E});
  const float w = config_->superclass_loss_weight;
  be_->softmax_cross_entropy(images, E, router_.logits(), labels_.data(), ones_.data(),
                             w / static_cast<float>(global), row_loss_.data(), d_logits_.data());
  be_->accumulate_columns(images, 1, row_loss_.data(), 1.0, metrics_->sums(loss_sum_));
  loss_scale_ = w / static_cast<double>(global);
  global_images_ = static_cast<double>(global);
  ++loss_forwards_;
  superclass_active_ = true;
}

void ImageRouter::backward(const float* x, float* dx, Workspace& /*ws*/) {
  (void)x;  // the pooled representation was kept in forward
  drep_.resize({images_, dim_});
  be_->fill(drep_.data(), images_ * dim_, 0.0f);
  router_.backward(rep_.data(), drep_.data(), superclass_active_ ? d_logits_.data() : nullptr);
  be_->pool_rows_backward(images_, tokens_, dim_, config_->router_input == RouterInput::kMean,
                          drep_.data(), dx);
}

double ImageRouter::aux_loss() const {
  double superclass = 0.0;
  if (superclass_active_)
    for (float v : row_loss_.to_host()) superclass += v;
  return router_.aux_loss() + loss_scale_ * superclass;
}

double ImageRouter::aux_loss_mean() const {
  double mean = router_.aux_loss_mean();
  if (loss_forwards_ > 0)
    mean += config_->superclass_loss_weight * metrics_->host_sum(loss_sum_) / global_images_ /
            static_cast<double>(loss_forwards_);
  return mean;
}

int64_t ImageRouter::superclass_hits() const {
  return eval_hits_.to_host()[0];
}

void ImageRouter::metrics(std::vector<Metric>& out) {
  const int64_t images = train_images_;
  const int64_t forwards = loss_forwards_;
  metrics_.begin_read();  // router_ reports to the same store
  router_.metrics("moe/image_router", out);
  if (images > 0) {
    out.push_back({"moe/image_router/superclass_accuracy",
                   static_cast<double>(metrics_->host_count(hits_)) / static_cast<double>(images)});
  }
  if (forwards > 0) {
    // Mean over images of each forward, then over forwards (every forward has the same images).
    out.push_back({"moe/image_router/superclass_loss", metrics_->host_sum(loss_sum_) /
                                                           static_cast<double>(images / forwards) /
                                                           static_cast<double>(forwards)});
  }
  metrics_.end_read();
  train_images_ = loss_forwards_ = 0;
}

}  // namespace vmoe
