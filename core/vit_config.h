// The shape of a Vision Transformer. Field names are the flag names of
// vmoe_train, so validation errors can name the flag to fix.
#pragma once

#include <cstdint>
#include <string>

#include "core/patch_embedding.h"

namespace vmoe {

enum class Pooling { kToken, kGap };

struct ViTConfig {
  ImageShape image;         // from the dataset
  int patch_size = 4;
  int hidden_size = 96;     // D
  int num_layers = 6;
  int num_heads = 3;
  int mlp_dim = 384;
  int num_classes = 10;     // from the dataset
  Pooling classifier = Pooling::kToken;
  bool multi_label = false; // sigmoid cross-entropy and a -10 head bias
  int pre_logits_size = 0;  // > 0: a tanh dense layer of this width before the head (JFT models)
  float layernorm_eps = 1e-6f;
  // Activation recomputation: blocks keep only their inputs between forward
  // and backward and re-run their forward before their backward (the same
  // gradients bit for bit; one block's activations instead of every block's).
  // Not part of the model's shape: checkpoints do not depend on it.
  bool remat = false;

  int grid_height() const { return image.height / patch_size; }
  int grid_width() const { return image.width / patch_size; }
  int patches() const { return grid_height() * grid_width(); }
  int tokens() const { return patches() + (classifier == Pooling::kToken ? 1 : 0); }
  // Width of the features the head reads (and few-shot evaluation uses).
  int feature_size() const { return pre_logits_size > 0 ? pre_logits_size : hidden_size; }
};

// Throws vmoe::Error naming the flag when a size is impossible.
void validate(const ViTConfig& c);

// Matrix-product FLOPs of one forward pass per image (backward is twice that);
// shared by the model and the planner.
double vit_forward_flops_per_image(const ViTConfig& c);

Pooling parse_pooling(const std::string& name);  // "token" | "gap"
const char* pooling_name(Pooling p);

}  // namespace vmoe
