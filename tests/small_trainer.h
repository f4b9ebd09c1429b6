// The small training configuration the multi-rank trainer tests share: a
// 4-block ViT with, for MoE, 4 experts in blocks 1 and 3, groups of 2 images,
// capacity ratio 0.5 (so choices are dropped), every auxiliary loss on, and
// clipping.
#pragma once

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

}  // namespace vmoe::testing
