// The small training configuration the multi-rank trainer tests share: a
// 4-block ViT with, for MoE, 4 experts in blocks 1 and 3, groups of 2 images,
// capacity ratio 0.5 (so choices are dropped), every auxiliary loss on, and
// clipping.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "launch/trainer.h"
#include "tests/test_util.h"

namespace vmoe::testing {

inline TrainerOptions small_trainer_options(bool moe, Routing routing, Precision precision,
                                            int64_t global_batch) {
  TrainerOptions o;
  o.model = tiny_vit(Pooling::kToken, 12);
  o.model.num_layers = 4;
  if (moe) {
    o.moe.layers = {1, 3};
    o.moe.num_experts = 4;
    o.moe.num_selected = routing == Routing::kToken ? 2 : 1;
    o.moe.group_size = 2;
    o.moe.capacity_ratio = 0.5;  // drops
    o.moe.routing = routing;
    o.moe.importance_loss_weight = o.moe.load_loss_weight = 0.05f;
    o.moe.gshard_loss_weight = 0.05f;
    o.moe.z_loss_weight = 0.01f;
    if (routing == Routing::kImage) o.moe.superclass_loss_weight = 0.3f;
  }
  o.optimizer.grad_clip_norm = 1.0f;
  o.schedule = {.base = 1e-2, .total_steps = 10};
  o.seed = 7;
  o.global_batch = global_batch;
  o.precision = precision;
  return o;
}

// One model of the trainer tests that compare two ways of training it.
struct TrainCase {
  std::string name;
  bool moe = false;
  Routing routing = Routing::kToken;
  bool remat = false;
  Precision precision = Precision::kFp32;
  int attention_pad_to = 0;  // Backend::set_attention_pad_to (8: the GPU's head-major layout)
};

inline TrainerOptions small_trainer_options(const TrainCase& c, int64_t global_batch) {
  TrainerOptions o = small_trainer_options(c.moe, c.routing, c.precision, global_batch);
  o.model.remat = c.remat;
  return o;
}

// Rank `rank`'s labels and super-class labels (4 super-classes) for
// `per_rank` images of the global batch.
struct SmallBatch {
  std::vector<int32_t> labels, superclass;
  int64_t rows() const { return static_cast<int64_t>(labels.size()); }
  LossTargets targets() const { return {rows(), labels.data(), nullptr, nullptr}; }
  // The super-class labels a Mobile V-MoE step takes, or null.
  const int32_t* superclass_for(Routing routing) const {
    return routing == Routing::kImage ? superclass.data() : nullptr;
  }
};

inline SmallBatch small_batch(int rank, int64_t per_rank, int num_classes) {
  SmallBatch b;
  for (int64_t i = 0; i < per_rank; ++i) {
    b.labels.push_back(static_cast<int32_t>((rank * per_rank + i) * 7 % num_classes));
    b.superclass.push_back(static_cast<int32_t>((rank * per_rank + i) % 4));
  }
  return b;
}

}  // namespace vmoe::testing
