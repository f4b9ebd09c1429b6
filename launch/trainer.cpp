#include "launch/trainer.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "parallel/image_router.h"
#include "parallel/moe_model.h"
#include "parallel/router.h"

namespace vmoe {

EvalResult& EvalResult::operator+=(const EvalResult& o) {
  count += o.count;
  correct += o.correct;
  loss_sum += o.loss_sum;
  choices += o.choices;
  dropped += o.dropped;
  superclass_hits += o.superclass_hits;
  if (confusion.empty()) confusion.assign(o.confusion.size(), 0);
  for (size_t i = 0; i < o.confusion.size(); ++i) confusion[i] += o.confusion[i];
  return *this;
}

Trainer::Trainer(Backend& be, const TrainerOptions& options, ProcessGroups* groups)
    : be_(&be),
      options_(options),
      groups_(groups),
      loss_(be, options.model.num_classes, options.model.multi_label),
      images_(be),
      dlogits_(be),
      mask_(be) {
  VMOE_CHECK(options.global_batch > 0, "--batch_size must be positive, got ",
             options.global_batch);
  if (groups != nullptr) {
    rank_ = groups->world().rank();
    world_ = groups->world().size();
  }
  VMOE_CHECK(options.global_batch % world_ == 0, "--batch_size=", options.global_batch,
             " must be divisible by the number of ranks (", world_, ")");
  rank_batch_ = options.global_batch / world_;
  be.set_precision(options.precision);
  validate(options_.moe, options_.model, rank_batch_);
  ExpertSharding sharding;
  if (groups != nullptr && options_.moe.enabled())
    sharding = {groups->placement(), &groups->expert_parallel()};
  // The layers keep a pointer to options_.moe: evaluation knobs set through
  // moe() take effect at the next evaluation.
  model_ = std::make_unique<ViT>(
      be, params_, options_.model,
      moe_extensions(be, options_.moe, options_.model, options.seed, sharding));
  params_.allocate(be);
  if (groups != nullptr)
    sync_ = std::make_unique<GradientSync>(params_, *groups, options.allreduce_bucket_floats);
  params_.initialize(options.seed);
  optimizer_ = std::make_unique<Optimizer>(options.optimizer, params_);
}

void Trainer::upload_images(const float* images, int64_t rows) {
  const ImageShape& s = options_.model.image;
  images_.resize({rows, s.height, s.width, s.channels});
  images_.copy_from_host(images, images_.size());
}

void Trainer::set_superclass(const int32_t* superclass, const LossTargets& targets) {
  ImageRouter* router = image_router_of(*model_);
  if (router != nullptr && superclass != nullptr)
    router->set_superclass(superclass, targets.rows, targets.mask);
}

StepResult Trainer::train_step(const float* images, const LossTargets& targets,
                               const int32_t* superclass) {
  StepResult r;
  r.lr = options_.schedule.at(step());
  upload_images(images, targets.rows);
  set_superclass(superclass, targets);
  VMOE_ASSERT(targets.rows == rank_batch_);
  model_->forward(images_.data(), targets.rows,
                  Pass{.training = true,
                       .step = step(),
                       .first_image = rank_ * rank_batch_,
                       .global_images = options_.global_batch});
  dlogits_.resize({targets.rows, options_.model.num_classes});
  const float scale = 1.0f / static_cast<float>(options_.global_batch);
  params_.zero_grads();
  double losses[2] = {
      loss_.forward_backward(model_->logits(), targets, scale, dlogits_.data()) /
          static_cast<double>(options_.global_batch),
      0.0};
  model_->backward(dlogits_.data());
  losses[1] = model_->aux_loss();
  if (sync_) {
    sync_->all_reduce();
    r.grad_norm = sync_->global_norm();
    groups_->host().all_reduce(losses, 2, ReduceOp::kSum);
  } else {
    r.grad_norm = std::sqrt(be_->sum_squares(params_.size(), params_.grads().data()));
  }
  r.loss = losses[0];
  r.aux_loss = losses[1];
  clip_gradients(params_, r.grad_norm, options_.optimizer.grad_clip_norm);
  optimizer_->step(static_cast<float>(r.lr));
  return r;
}

void Trainer::forward_eval(const float* images, int64_t rows, const uint8_t* mask) {
  upload_images(images, rows);
  const float* device_mask = nullptr;
  if (mask != nullptr) {
    host_mask_.assign(mask, mask + rows);
    mask_.resize({rows});
    mask_.copy_from_host(host_mask_);
    device_mask = mask_.data();
  }
  model_->forward(images_.data(), rows, Pass{.image_mask = device_mask});
}

void Trainer::features(const float* images, int64_t rows, const uint8_t* mask, float* out) {
  forward_eval(images, rows, mask);
  be_->copy_to_host(out, model_->pre_logits(),
                    static_cast<size_t>(rows * options_.model.feature_size()) * sizeof(float));
}

EvalResult Trainer::evaluate(const float* images, const LossTargets& targets,
                             const int32_t* superclass) {
  std::vector<Router*> routers = routers_of(*model_);
  for (Router* router : routers) router->reset_counts();
  set_superclass(superclass, targets);
  forward_eval(images, targets.rows, targets.mask);
  EvalResult r;
  for (Router* router : routers) {
    const std::vector<int64_t> counts = router->counts();
    for (size_t e = 0; e + 1 < counts.size(); ++e) r.choices += counts[e];
    r.dropped += counts.back();
  }
  if (ImageRouter* router = image_router_of(*model_); router && superclass)
    r.superclass_hits = router->superclass_hits();
  r.loss_sum = loss_.forward(model_->logits(), targets);
  const int classes = options_.model.num_classes;
  host_logits_.resize(static_cast<size_t>(targets.rows * classes));
  be_->copy_to_host(host_logits_.data(), model_->logits(), host_logits_.size() * sizeof(float));
  r.correct = count_correct_at_1(host_logits_.data(), classes, targets);
  if (targets.labels != nullptr) {
    r.confusion.assign(static_cast<size_t>(classes) * classes, 0);
    for (int64_t i = 0; i < targets.rows; ++i) {
      if (targets.mask != nullptr && !targets.mask[i]) continue;
      const float* z = host_logits_.data() + i * classes;
      const int pred = static_cast<int>(std::max_element(z, z + classes) - z);
      ++r.confusion[static_cast<size_t>(targets.labels[i]) * classes + pred];
    }
  }
  for (int64_t i = 0; i < targets.rows; ++i) r.count += (targets.mask == nullptr || targets.mask[i]);
  return r;
}

std::vector<Metric> Trainer::routing_metrics() {
  std::vector<Metric> out;
  model_->metrics(out);
  if (groups_ != nullptr && world_ > 1) {
    std::vector<double> values;
    for (const Metric& m : out) values.push_back(m.value);
    groups_->host().all_reduce(values.data(), static_cast<int64_t>(values.size()),
                               ReduceOp::kSum);
    for (size_t i = 0; i < out.size(); ++i) out[i].value = values[i] / world_;
  }
  return out;
}

void Trainer::reduce_over_ranks(EvalResult& r) {
  if (groups_ == nullptr || world_ == 1) return;
  Communicator& world = groups_->host();  // host values
  int64_t counts[5] = {r.count, r.correct, r.choices, r.dropped, r.superclass_hits};
  world.all_reduce(counts, 5, ReduceOp::kSum);
  r.count = counts[0];
  r.correct = counts[1];
  r.choices = counts[2];
  r.dropped = counts[3];
  r.superclass_hits = counts[4];
  r.loss_sum = all_reduce_value(world, r.loss_sum);
  // Every rank has a confusion matrix of the same size (possibly all zero).
  int64_t size = static_cast<int64_t>(r.confusion.size());
  size = all_reduce_value(world, size, ReduceOp::kMax);
  r.confusion.resize(static_cast<size_t>(size), 0);
  if (size > 0) world.all_reduce(r.confusion.data(), size, ReduceOp::kSum);
}

double Trainer::forward_flops_per_image(bool training) const {
  return model_->forward_flops_per_image() +
         (options_.moe.enabled() ? moe_forward_flops_per_image(options_.model, options_.moe, training)
                                 : 0.0);
}

}  // namespace vmoe
