#include "launch/trainer.h"

#include <cmath>

#include "core/check.h"

namespace vmoe {

EvalResult& EvalResult::operator+=(const EvalResult& o) {
  count += o.count;
  correct += o.correct;
  loss_sum += o.loss_sum;
  return *this;
}

Trainer::Trainer(Backend& be, const TrainerOptions& options)
    : be_(&be),
      options_(options),
      loss_(be, options.model.num_classes, options.model.multi_label),
      images_(be),
      dlogits_(be) {
  VMOE_CHECK(options.global_batch > 0, "--batch_size must be positive, got ",
             options.global_batch);
  model_ = std::make_unique<ViT>(be, params_, options.model);
  params_.allocate(be);
  params_.initialize(options.seed);
  optimizer_ = std::make_unique<Optimizer>(options.optimizer, params_);
}

void Trainer::upload_images(const float* images, int64_t rows) {
  const ImageShape& s = options_.model.image;
  images_.resize({rows, s.height, s.width, s.channels});
  images_.copy_from_host(images, images_.size());
}

StepResult Trainer::train_step(const float* images, const LossTargets& targets) {
  StepResult r;
  r.lr = options_.schedule.at(step());
  upload_images(images, targets.rows);
  model_->forward(images_.data(), targets.rows, Pass{.training = true, .step = step()});
  dlogits_.resize({targets.rows, options_.model.num_classes});
  const float scale = 1.0f / static_cast<float>(options_.global_batch);
  params_.zero_grads();
  r.loss = loss_.forward_backward(model_->logits(), targets, scale, dlogits_.data()) /
           static_cast<double>(options_.global_batch);
  model_->backward(dlogits_.data());
  r.aux_loss = model_->aux_loss();
  r.grad_norm = std::sqrt(be_->sum_squares(params_.size(), params_.grads().data()));
  clip_gradients(params_, r.grad_norm, options_.optimizer.grad_clip_norm);
  optimizer_->step(static_cast<float>(r.lr));
  return r;
}

EvalResult Trainer::evaluate(const float* images, const LossTargets& targets) {
  upload_images(images, targets.rows);
  model_->forward(images_.data(), targets.rows, Pass{});
  EvalResult r;
  r.loss_sum = loss_.forward(model_->logits(), targets);
  const int classes = options_.model.num_classes;
  host_logits_.resize(static_cast<size_t>(targets.rows * classes));
  be_->copy_to_host(host_logits_.data(), model_->logits(), host_logits_.size() * sizeof(float));
  r.correct = count_correct_at_1(host_logits_.data(), classes, targets);
  for (int64_t i = 0; i < targets.rows; ++i) r.count += (targets.mask == nullptr || targets.mask[i]);
  return r;
}

}  // namespace vmoe
