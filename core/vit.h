// The Vision Transformer: patch embedding, a stack of pre-LN blocks (each
// with a dense MLP or a sublayer from the factory, e.g. a mixture of
// experts), a final LayerNorm, token or mean pooling, and a linear head.
#pragma once

#include <memory>
#include <vector>

#include "core/activation_pool.h"
#include "core/feed_forward.h"
#include "core/linear.h"
#include "core/patch_embedding.h"
#include "core/tensor.h"
#include "core/transformer_block.h"
#include "core/vit_config.h"
#include "core/workspace.h"

namespace vmoe {

// What a model adds to the plain ViT (see feed_forward.h): a factory for the
// blocks' sublayers, and an observer reading the input of one block.
struct ViTExtensions {
  FeedForwardFactory feed_forward;
  std::function<std::unique_ptr<StreamObserver>(ParamStore&)> observer;
  int observer_block = -1;
};

class ViT {
 public:
  // Registers all parameters in `store` (allocate and initialise it afterwards).
  ViT(Backend& be, ParamStore& store, const ViTConfig& config,
      const ViTExtensions& extensions = {});

  // images [batch, H, W, C] on the device, in [-1, 1]. With config().remat
  // the blocks keep nothing afterwards (token routers' choices included;
  // their counts and metrics remain).
  void forward(const float* images, int64_t batch, const Pass& pass);
  const float* logits() const { return logits_.data(); }       // [batch, classes]
  // The features the head reads: [batch, feature_size()] (pooled, or the
  // pre-logits layer's tanh output).
  const float* pre_logits() const {
    return config_.pre_logits_size > 0 ? pre_.data() : pooled_.data();
  }
  // Parameter gradients accumulate from dL/dlogits [batch, classes]. With
  // config().remat each block first recomputes its forward (same pass).
  void backward(const float* dlogits);

  const ViTConfig& config() const { return config_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  TransformerBlock& block(int i) { return *blocks_[static_cast<size_t>(i)]; }
  StreamObserver* observer() { return observer_.get(); }
  // Sum of the sublayers' auxiliary losses of the last training forward
  // (reads the device), and of their means since the metrics were reset
  // (core/feed_forward.h).
  double aux_loss() const;
  double aux_loss_mean() const;
  // Metrics of every sublayer and the observer since the last call.
  void metrics(std::vector<Metric>& out);
  // Matrix-product FLOPs of one forward pass per image (backward is twice that).
  double forward_flops_per_image() const;

 private:
  Backend* be_;
  ViTConfig config_;
  PatchEmbedding embedding_;
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  std::unique_ptr<StreamObserver> observer_;
  int observer_block_ = -1;
  LayerNorm norm_;
  Linear pre_logits_;  // only with pre_logits_size > 0
  Linear head_;
  Workspace workspace_;
  // remat: the blocks' activations live in pool_ only while a block runs.
  ActivationPool pool_;
  std::vector<ActivationSet> activations_;  // per block
  Pass pass_;                               // of the last forward, for the recompute
  int64_t batch_ = 0;
  std::vector<Tensor> resid_;  // resid_[l]: input of block l; resid_[L]: encoder output
  Tensor dresid_;
  Tensor norm_in_, norm_out_, norm_mean_, norm_rstd_;  // final LayerNorm (pooled rows for kToken)
  Tensor pooled_, dpooled_, dnorm_;
  Tensor pre_, dpre_;  // pre-logits layer output (after tanh) and its gradient
  Bf16Tensor pooled16_, pre16_;  // bf16 copies of the head's inputs, under bf16
  Tensor logits_;

  // Block l from resid_[l] into resid_[l + 1].
  void block_forward(int l, const Pass& pass);
  // The head's input (pre_logits()) with its bf16 copy.
  GemmInput head_input();
};

}  // namespace vmoe
