#include "core/transformer_block.h"

#include "core/activation_pool.h"
#include "core/workspace.h"

namespace vmoe {

TransformerBlock::TransformerBlock(Backend& be, ParamStore& store, const std::string& name, int dim,
                                   int heads, float eps, std::unique_ptr<FeedForward> feed_forward)
    : be_(&be),
      dim_(dim),
      ln1_(store, name + "/ln1", dim, eps),
      ln2_(store, name + "/ln2", dim, eps),
      attention_(be, store, name + "/attention", dim, heads),
      ff_(std::move(feed_forward)),
      norm1_(be),
      mean1_(be),
      rstd1_(be),
      mid_(be),
      norm2_(be),
      mean2_(be),
      rstd2_(be),
      norm1_16_(be),
      norm2_16_(be) {}

void TransformerBlock::collect_activations(ActivationSet& set) {
  set.add(norm1_, mean1_, rstd1_, mid_, norm2_, mean2_, rstd2_);
  set.add(norm1_16_, norm2_16_);
  attention_.collect_activations(set);
  ff_->collect_activations(set);
}

void TransformerBlock::forward(const float* x, int64_t images, int tokens, float* y,
                               const Pass& pass) {
  rows_ = images * tokens;
  mid_.resize({rows_, dim_});
  for (Tensor* t : {&mean1_, &rstd1_, &mean2_, &rstd2_}) t->resize({rows_});
  uint16_t* norm1_16 = bf16_copy(norm1_16_, {rows_, dim_});
  uint16_t* norm2_16 = bf16_copy(norm2_16_, {rows_, dim_});
  // Under bf16 a norm that only GEMMs read is kept as its copy alone.
  float* norm1 = norm_values(norm1_, true);
  float* norm2 = norm_values(norm2_, ff_->only_gemms_read_input());
  ln1_.forward(*be_, x, rows_, norm1, mean1_.data(), rstd1_.data(), norm1_16);
  attention_.forward({norm1, norm1_16}, images, tokens, mid_.data());
  // mid = x + attention; norm2 = LN2(mid), in one pass.
  ln2_.add_forward(*be_, x, mid_.data(), rows_, norm2, mean2_.data(), rstd2_.data(), norm2_16);
  ff_->forward({norm2, norm2_16}, images, tokens, y, pass);
  be_->axpy(rows_ * dim_, 1.0f, mid_.data(), y);
}

float* TransformerBlock::norm_values(Tensor& norm, bool only_gemms_read) {
  if (only_gemms_read) return gemm_only_values(norm, {rows_, dim_});
  norm.resize({rows_, dim_});
  return norm.data();
}

const uint16_t* TransformerBlock::backward(const float* x, float* dresid, Workspace& ws,
                                           const uint16_t* dresid16) {
  float* dnorm = ws.get(Scratch::kNormGrad, {rows_, dim_});
  const float* norm1 = gemm_only_values(norm1_);
  const float* norm2 = ff_->only_gemms_read_input() ? gemm_only_values(norm2_) : norm2_.data();
  ff_->backward({norm2, norm2_16_.data()}, {dresid, dresid16}, dnorm, ws);
  // Each norm's backward finishes the residual gradient that GEMMs read next
  // (attention's output projection, the MLP of the block below): it writes
  // the copy, instead of a conversion pass at each reader. dresid16 may be
  // this slot: the sublayer is done with it.
  uint16_t* copy = ws.get_bf16(Scratch::kOutputGrad, {rows_, dim_});
  ln2_.backward(*be_, mid_.data(), mean2_.data(), rstd2_.data(), dnorm, rows_, dresid, copy);
  attention_.backward({norm1, norm1_16_.data()}, {dresid, copy}, dnorm, ws);
  ln1_.backward(*be_, x, mean1_.data(), rstd1_.data(), dnorm, rows_, dresid, copy);
  return copy;
}

}  // namespace vmoe
