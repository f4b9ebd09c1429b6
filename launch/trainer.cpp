#include "launch/trainer.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/phase_timer.h"
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
      mask_(be),
      grad_sq_(be, {2}),
      clip_factor_(be, {1}) {
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
  if (options.attention_pad_to >= 0) be.set_attention_pad_to(options.attention_pad_to);
  validate(options_.moe, options_.model, rank_batch_);
  ExpertSharding sharding;
  if (groups != nullptr && options_.moe.enabled())
    sharding = {groups->placement(), &groups->expert_parallel(), groups->expert_peer_buffers()};
  // The layers keep a pointer to options_.moe: evaluation knobs set through
  // moe() take effect at the next evaluation.
  loss_sum_ = metrics_.add(1);
  grad_norm_ = metrics_.add(1);
  model_ = std::make_unique<ViT>(
      be, params_, options_.model,
      moe_extensions(be, options_.moe, options_.model, options.seed, sharding, &metrics_));
  params_.allocate(be);
  metrics_.allocate(be);
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
  stage(images, targets, superclass);
  return train_staged();
}

void Trainer::stage(const float* images, const LossTargets& targets, const int32_t* superclass) {
  VMOE_ASSERT(targets.rows == rank_batch_);
  upload_images(images, targets.rows);
  set_superclass(superclass, targets);
  loss_.stage(targets);
  staged_rows_ = targets.rows;
}

void Trainer::stage_pixels(const uint8_t* pixels, const LossTargets& targets,
                           const int32_t* superclass, float mixup_lambda) {
  VMOE_ASSERT(targets.rows == rank_batch_);
  const ImageShape& s = options_.model.image;
  images_.resize({targets.rows, s.height, s.width, s.channels});
  be_->upload_pixels(images_.size(), pixels, images_.data());
  if (mixup_lambda >= 0.0f)
    be_->mix_pairs(targets.rows / 2, images_.size() / targets.rows, mixup_lambda, images_.data());
  set_superclass(superclass, targets);
  loss_.stage(targets);
  staged_rows_ = targets.rows;
}

StepResult Trainer::train_staged() {
  VMOE_CHECK(staged_rows_ == rank_batch_, "Trainer::train_staged before stage()");
  StepResult r;
  r.lr = options_.schedule.at(optimizer_->steps_taken());
  const HostTraffic before = be_->traffic();
  // A step is captured once two uncaptured ones have warmed the memory it
  // uses (again after the graph was dropped), and never while phases are
  // timed (a timing event inside a graph cannot be read). Two, because the
  // first may allocate tensors kept across steps (or resize them after an
  // evaluation), and those can take over blocks its own temporaries freed;
  // the second leaves the cache holding every temporary the step needs, so
  // the capture allocates nothing (a cudaMalloc would end it).
  const bool want = options_.capture_step && !capture_failed_ && !PhaseTimer::instance().enabled();
  if (want && be_->capture_valid()) {
    be_->replay();
  } else {
    bool ran = false;
    if (want && warm_steps_ >= 2) {
      ran = be_->capture([this] { queue_step(); });  // records and runs it
      capture_failed_ = !ran;
      warm_steps_ = 0;
    }
    if (!ran) {
      be_->drop_capture();  // a stale graph's claim on memory goes
      queue_step();
      ++warm_steps_;
    }
  }
  optimizer_->count_step();
  ++steps_since_read_;

  const HostTraffic after = be_->traffic();
  r.traffic = {after.to_device - before.to_device, after.to_host - before.to_host,
               after.syncs - before.syncs};
  return r;
}

void Trainer::queue_step() {
  const int64_t rows = staged_rows_;
  model_->forward(images_.data(), rows,
                  Pass{.training = true,
                       .step = step(),
                       .device_step = optimizer_->device_step(),
                       .first_image = rank_ * rank_batch_,
                       .global_images = options_.global_batch});
  dlogits_.resize({rows, options_.model.num_classes});
  const float scale = 1.0f / static_cast<float>(options_.global_batch);
  params_.zero_grads();
  loss_.forward_backward(model_->logits(), scale, dlogits_.data(), metrics_.sums(loss_sum_));
  model_->backward(dlogits_.data());
  if (sync_) {
    sync_->all_reduce();
    sync_->squared_norms(grad_sq_.data());
  } else {
    be_->sum_squares(params_.size(), params_.grads().data(), grad_sq_.data());
    be_->zero(grad_sq_.data() + 1, sizeof(double));
  }
  PhaseScope timed("optimizer");
  const float max_norm = options_.optimizer.grad_clip_norm;
  be_->clip_scale(grad_sq_.data(), sync_ ? sync_->expert_divisor() : 1.0, max_norm,
                  metrics_.sums(grad_norm_), clip_factor_.data());
  // The rate is computed where the update runs, and the clipping applied as
  // it reads the gradients (no pass of its own over them).
  optimizer_->queue_update(options_.schedule, max_norm > 0.0f ? clip_factor_.data() : nullptr);
}

TrainMetrics Trainer::read_metrics() {
  TrainMetrics m;
  m.steps = steps_since_read_;
  metrics_.read();  // the one copy
  // Host values from here on: sum this rank's shares over the ranks.
  double sums[2] = {metrics_.host_sum(loss_sum_), model_->aux_loss_mean()};
  model_->metrics(m.routing);
  if (groups_ != nullptr && world_ > 1) {
    groups_->host().all_reduce(sums, 2, ReduceOp::kSum);
    std::vector<double> values;
    for (const Metric& metric : m.routing) values.push_back(metric.value);
    groups_->host().all_reduce(values.data(), static_cast<int64_t>(values.size()),
                               ReduceOp::kSum);
    for (size_t i = 0; i < m.routing.size(); ++i) m.routing[i].value = values[i] / world_;
  }
  const double steps = static_cast<double>(std::max<int64_t>(m.steps, 1));
  m.loss = sums[0] / static_cast<double>(options_.global_batch) / steps;
  m.aux_loss = sums[1];
  m.grad_norm = metrics_.host_sum(grad_norm_);  // the same on every rank
  metrics_.zero();
  steps_since_read_ = 0;
  return m;
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
  be_->drop_capture();  // see evaluate()
  forward_eval(images, rows, mask);
  be_->copy_to_host(out, model_->pre_logits(),
                    static_cast<size_t>(rows * options_.model.feature_size()) * sizeof(float));
}

EvalResult Trainer::evaluate(const float* images, const LossTargets& targets,
                             const int32_t* superclass) {
  // A captured step's graph keeps its temporaries reserved: dropped, they
  // serve the evaluation instead of new memory (the next steps capture again).
  be_->drop_capture();
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
