#include "core/patch_embedding.h"

namespace vmoe {

PatchEmbedding::PatchEmbedding(Backend& be, ParamStore& store, ImageShape image, int patch, int dim,
                               bool class_token)
    : be_(&be),
      store_(&store),
      image_(image),
      patch_(patch),
      dim_(dim),
      class_token_(class_token),
      patches_(be),
      patches16_(be),
      proj_(be) {
  const int64_t fan_in = int64_t{patch} * patch * image.channels;
  kernel_ = store.add({.name = "embedding/kernel",
                       .shape = {patch, patch, image.channels, dim},
                       .init = Init::kXavierUniform,
                       .fan_in = fan_in,
                       .fan_out = dim,
                       .weight_decay = true});
  bias_ = store.add({.name = "embedding/bias", .shape = {dim}});
  if (class_token) cls_ = store.add({.name = "cls", .shape = {dim}});
  pos_ = store.add({.name = "pos_embedding",
                    .shape = {tokens(), dim},
                    .init = Init::kNormal,
                    .init_value = 0.02f});
}

void PatchEmbedding::forward(const float* images, int64_t batch, float* tokens) {
  batch_ = batch;
  const int64_t rows = batch * patches();
  const int k = patch_ * patch_ * image_.channels;
  patches_.resize({rows, k});
  proj_.resize({rows, dim_});
  be_->patchify(batch, image_.height, image_.width, image_.channels, patch_, images,
                patches_.data());
  be_->gemm(Trans::kNo, Trans::kNo, static_cast<int>(rows), dim_, k, 1.0f,
            with_bf16_copy(patches16_, patches_.data(), {rows, k}), k, store_->weight(kernel_),
            dim_, 0.0f, proj_.data(), dim_);
  be_->embed_tokens(batch, patches(), dim_, proj_.data(), store_->value(bias_),
                    class_token_ ? store_->value(cls_) : nullptr, store_->value(pos_), tokens);
}

void PatchEmbedding::backward(const float* dtokens) {
  const int64_t rows = batch_ * patches();
  const int k = patch_ * patch_ * image_.channels;
  be_->embed_tokens_backward(batch_, patches(), dim_, dtokens, proj_.data(), store_->grad(bias_),
                             class_token_ ? store_->grad(cls_) : nullptr, store_->grad(pos_));
  be_->gemm(Trans::kYes, Trans::kNo, k, dim_, static_cast<int>(rows), 1.0f,
            {patches_.data(), patches16_.data()}, k, proj_.data(), dim_, 1.0f,
            store_->grad(kernel_), dim_);
}

}  // namespace vmoe
