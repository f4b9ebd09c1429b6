#include "core/loss.h"

#include "core/check.h"

namespace vmoe {

ClassificationLoss::ClassificationLoss(Backend& be, int classes, bool multi_label)
    : be_(&be),
      classes_(classes),
      multi_label_(multi_label),
      labels_(be),
      weight_(be),
      targets_(be),
      row_loss_(be),
      scratch_(be),
      sum_(be, {1}) {}

void ClassificationLoss::stage(const LossTargets& t) {
  rows_ = t.rows;
  host_weight_.assign(static_cast<size_t>(t.rows), 1.0f);
  if (t.mask != nullptr)
    for (int64_t r = 0; r < t.rows; ++r) host_weight_[r] = t.mask[r] ? 1.0f : 0.0f;
  weight_.resize({t.rows});
  weight_.copy_from_host(host_weight_);
  row_loss_.resize({t.rows});
  if (multi_label_) {
    VMOE_ASSERT(t.multi_hot != nullptr || t.soft_targets != nullptr);
    host_targets_.resize(static_cast<size_t>(t.rows * classes_));
    for (size_t i = 0; i < host_targets_.size(); ++i) {
      host_targets_[i] = t.soft_targets != nullptr ? t.soft_targets[i] : t.multi_hot[i] ? 1.0f : 0.0f;
    }
    targets_.resize({t.rows, classes_});
    targets_.copy_from_host(host_targets_);
  } else {
    VMOE_ASSERT(t.labels != nullptr);
    labels_.resize({t.rows});
    labels_.copy_from_host(t.labels, t.rows);
  }
}

void ClassificationLoss::forward_backward(const float* logits, float grad_scale, float* dlogits,
                                          double* loss_sum) {
  if (multi_label_) {
    be_->sigmoid_cross_entropy(rows_, classes_, logits, targets_.data(), weight_.data(),
                               grad_scale, row_loss_.data(), dlogits);
  } else {
    be_->softmax_cross_entropy(rows_, classes_, logits, labels_.data(), weight_.data(),
                               grad_scale, row_loss_.data(), dlogits);
  }
  be_->accumulate_columns(rows_, 1, row_loss_.data(), 1.0, loss_sum);
}

double ClassificationLoss::forward_backward(const float* logits, const LossTargets& t,
                                            float grad_scale, float* dlogits) {
  stage(t);
  be_->zero(sum_.data(), sizeof(double));
  forward_backward(logits, grad_scale, dlogits, sum_.data());
  return sum_.to_host()[0];
}

double ClassificationLoss::forward(const float* logits, const LossTargets& t) {
  scratch_.resize({t.rows, classes_});
  return forward_backward(logits, t, 0.0f, scratch_.data());
}

int64_t count_correct_at_1(const float* logits, int classes, const LossTargets& t) {
  int64_t correct = 0;
  for (int64_t r = 0; r < t.rows; ++r) {
    if (t.mask != nullptr && !t.mask[r]) continue;
    const float* z = logits + r * classes;
    int best = 0;
    for (int c = 1; c < classes; ++c)
      if (z[c] > z[best]) best = c;
    const bool hit = t.multi_hot != nullptr ? t.multi_hot[r * classes + best] != 0
                                            : t.labels[r] == best;
    correct += hit ? 1 : 0;
  }
  return correct;
}

}  // namespace vmoe
