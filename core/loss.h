// Classification losses over a batch: softmax cross-entropy for single
// labels, sigmoid cross-entropy summed over classes for multi-hot labels.
// Padding rows (mask 0) contribute neither loss nor gradient.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

struct LossTargets {
  int64_t rows = 0;
  const int32_t* labels = nullptr;     // [rows] single-label, or
  const uint8_t* multi_hot = nullptr;  // [rows, classes] multi-label
  const uint8_t* mask = nullptr;       // [rows] 1 = real example; null = all real
  const float* soft_targets = nullptr;  // multi-label: [rows, classes] targets in [0, 1]
                                        // used instead of multi_hot (mixup)
};

class ClassificationLoss {
 public:
  ClassificationLoss(Backend& be, int classes, bool multi_label);

  // Copies the targets (and mask) of the next forward_backward to the device:
  // the step's inputs, staged before it.
  void stage(const LossTargets& targets);
  // Per-row losses of the staged targets and dlogits = grad_scale *
  // dL/dlogits; *loss_sum (device) += the sum of the row losses. No host copy.
  void forward_backward(const float* logits, float grad_scale, float* dlogits, double* loss_sum);
  // The same outside a training step (tests, one-off uses): stages, computes,
  // returns the sum of the row losses (a host read).
  double forward_backward(const float* logits, const LossTargets& targets, float grad_scale,
                          float* dlogits);
  // Loss sum only (evaluation); dlogits go to an internal buffer.
  double forward(const float* logits, const LossTargets& targets);

 private:
  Backend* be_;
  int classes_;
  bool multi_label_;
  std::vector<float> host_weight_, host_targets_;
  IntTensor labels_;
  int64_t rows_ = 0;  // staged
  Tensor weight_, targets_, row_loss_, scratch_;
  DeviceTensor<double> sum_;  // forward()'s
};

// Number of rows (with mask 1) whose top-scoring class is one of their labels.
int64_t count_correct_at_1(const float* host_logits, int classes, const LossTargets& targets);

}  // namespace vmoe
