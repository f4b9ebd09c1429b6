#include "core/attention.h"

#include <cmath>
#include <optional>

#include "core/activation_pool.h"
#include "core/check.h"
#include "core/phase_timer.h"
#include "core/workspace.h"

namespace vmoe {

SelfAttention::SelfAttention(Backend& be, ParamStore& store, const std::string& name, int dim,
                             int heads)
    : be_(&be),
      dim_(dim),
      heads_(heads),
      head_dim_(dim / heads),
      // q, k and v are each a D x D projection: xavier over (D, D), not (D, 3D).
      qkv_(store, name + "/qkv", dim, 3 * dim, {.fan_out = dim}),
      out_(store, name + "/out", dim, dim),
      qkv_act_(be),
      probs_(be),
      context_(be),
      qkv16_(be),
      probs16_(be),
      context16_(be) {
  VMOE_ASSERT(dim % heads == 0);
}

void SelfAttention::collect_activations(ActivationSet& set) {
  set.add(qkv_act_, probs_, context_);
  set.add(qkv16_, probs16_, context16_);
}

void SelfAttention::forward(GemmInput x, int64_t images, int tokens, float* y) {
  PhaseScope timed_("attention");
  images_ = images;
  tokens_ = tokens;
  if (be_->attention_pad_to() > 0) return forward_head_major(x, y);
  const int64_t rows = images * tokens, T = tokens, D = dim_, hd = head_dim_, H = heads_;
  const int ld = be_->scores_ld(tokens);
  const int64_t Tl = T * ld;  // one head's scores
  qkv_act_.resize({rows, 3 * D});
  context_.resize({rows, D});
  uint16_t* qkv16 = bf16_copy(qkv16_, {rows, 3 * D});
  std::optional<Tensor> scores_only;
  const Probabilities p = probabilities({images, H, T, ld}, scores_only);
  qkv_.forward(*be_, x, rows, qkv_act_.data(), qkv16);
  const GemmInput q(qkv_act_.data(), qkv16);
  const GemmInput k = q.offset(D);
  const GemmInput v = q.offset(2 * D);
  // scores[b, h] = Q_bh K_bh^T
  be_->gemm_batched(Trans::kNo, Trans::kYes, tokens, tokens, head_dim_, 1.0f, q, 3 * dim_, k,
                    3 * dim_, 0.0f, p.scores, ld, {images, T * 3 * D, T * 3 * D, H * Tl},
                    {H, hd, hd, Tl});
  be_->softmax_forward(images * H * T, tokens, ld, score_scale(), p.scores, p.probs, p.probs16);
  scores_only.reset();  // back to the cache
  // context[b, :, h] = P_bh V_bh
  be_->gemm_batched(Trans::kNo, Trans::kNo, tokens, head_dim_, tokens, 1.0f, {p.probs, p.probs16},
                    ld, v, 3 * dim_, 0.0f, context_.data(), dim_,
                    {images, H * Tl, T * 3 * D, T * D}, {H, Tl, hd, hd});
  // A GEMM's output: converted once, for out's forward and its weight gradient.
  out_.forward(*be_, with_bf16_copy(context16_, context_.data(), {rows, D}), rows, y);
}

void SelfAttention::backward(GemmInput x, GemmInput dy, float* dx, Workspace& ws) {
  PhaseScope timed_("attention");
  if (be_->attention_pad_to() > 0) return backward_head_major(x, dy, dx, ws);
  const int64_t rows = images_ * tokens_, T = tokens_, D = dim_, hd = head_dim_, H = heads_;
  const int tokens = tokens_;
  const int ld = be_->scores_ld(tokens);
  const int64_t Tl = T * ld;
  float* dcontext = ws.get(Scratch::kContextGrad, {rows, D});
  float* dprobs = ws.get(Scratch::kScoresGrad, {images_, H, T, ld});
  float* dqkv = ws.get(Scratch::kQkvGrad, {rows, 3 * D});
  uint16_t* dprobs16 = ws.get_bf16(Scratch::kScoresGrad, {images_, H, T, ld});
  const GemmInput dy_in = ws.shared_input(Scratch::kOutputGrad, dy, {rows, D});
  out_.backward(*be_, {context_.data(), context16_.data()}, dy_in, rows, dcontext);
  // dcontext and dqkv are GEMM outputs, each read by two GEMMs: converted once.
  const GemmInput dc = ws.shared_input(Scratch::kContextGrad, dcontext, {rows, D});
  const GemmInput q(qkv_act_.data(), qkv16_.data());
  const GemmInput k = q.offset(D);
  const GemmInput v = q.offset(2 * D);
  const GemmInput p(gemm_only_values(probs_), probs16_.data());
  // dP_bh = dC_bh V_bh^T
  be_->gemm_batched(Trans::kNo, Trans::kYes, tokens, tokens, head_dim_, 1.0f, dc, dim_, v, 3 * dim_,
                    0.0f, dprobs, ld, {images_, T * D, T * 3 * D, H * Tl}, {H, hd, hd, Tl});
  // dV_bh = P_bh^T dC_bh
  be_->gemm_batched(Trans::kYes, Trans::kNo, tokens, head_dim_, tokens, 1.0f, p, ld, dc, dim_, 0.0f,
                    dqkv + 2 * D, 3 * dim_, {images_, H * Tl, T * D, T * 3 * D}, {H, Tl, hd, hd});
  // Under bf16 only GEMMs read the score gradient: its copy alone is written.
  float* dscores = be_->bf16_copies_suffice() ? nullptr : dprobs;
  be_->softmax_backward(images_ * H * T, tokens, ld, score_scale(), p.f32, bf16_copy(probs16_),
                        dprobs, dscores, dprobs16);
  const GemmInput ds(dscores, dprobs16);
  // dQ_bh = dS_bh K_bh ; dK_bh = dS_bh^T Q_bh
  be_->gemm_batched(Trans::kNo, Trans::kNo, tokens, head_dim_, tokens, 1.0f, ds, ld, k, 3 * dim_,
                    0.0f, dqkv, 3 * dim_, {images_, H * Tl, T * 3 * D, T * 3 * D}, {H, Tl, hd, hd});
  be_->gemm_batched(Trans::kYes, Trans::kNo, tokens, head_dim_, tokens, 1.0f, ds, ld, q, 3 * dim_,
                    0.0f, dqkv + D, 3 * dim_, {images_, H * Tl, T * 3 * D, T * 3 * D},
                    {H, Tl, hd, hd});
  qkv_.backward(*be_, x, ws.shared_input(Scratch::kQkvGrad, dqkv, {rows, 3 * D}), rows, dx);
}

// ---- head-major: heads packed [slab, B, H, Tp, hd], Tp = T padded ------------------------
// The padding rows of q, k, v and of the context gradient are zeros, so every
// product over Tp equals the one over T: padded score columns are 0 (softmax
// keeps them 0), padded query rows give rows the unpacking drops, and their
// gradient rows are 0.

SelfAttention::Probabilities SelfAttention::probabilities(const Shape& shape,
                                                          std::optional<Tensor>& scores_only) {
  Probabilities p;
  p.probs16 = bf16_copy(probs16_, shape);
  p.probs = gemm_only_values(probs_, shape);
  p.scores = p.probs != nullptr ? p.probs : scores_only.emplace(*be_, shape).data();
  return p;
}

int SelfAttention::padded_tokens() const {
  const int n = be_->attention_pad_to();
  return (tokens_ + n - 1) / n * n;
}

void SelfAttention::forward_head_major(GemmInput x, float* y) {
  const int64_t images = images_, rows = images * tokens_, D = dim_, hd = head_dim_, H = heads_;
  const int64_t Tp = padded_tokens(), mat = Tp * hd, slab = images * H * mat;
  const float scale = score_scale();
  {
    // The projection's bias is added as the heads are packed; under bf16
    // only GEMMs read q, k and v, so their copies alone are kept.
    Tensor projected(*be_, {rows, 3 * D});
    qkv_.matmul(*be_, x, rows, projected.data());
    be_->pack_heads(images, tokens_, static_cast<int>(Tp), heads_, head_dim_, 3, projected.data(),
                    qkv_.bias_value(), gemm_only_values(qkv_act_, {3, images, H, Tp, hd}),
                    bf16_copy(qkv16_, {3, images, H, Tp, hd}));
  }
  const GemmInput q(gemm_only_values(qkv_act_), qkv16_.data());
  const GemmInput k = q.offset(slab), v = q.offset(2 * slab);
  const int tp = static_cast<int>(Tp);
  std::optional<Tensor> scores_only;
  const Probabilities p = probabilities({images, H, Tp, Tp}, scores_only);
  const BatchLevel one{1, 0, 0, 0};
  // scores[bh] = Q_bh K_bh^T: one launch over all images and heads.
  be_->gemm_batched(Trans::kNo, Trans::kYes, tp, tp, head_dim_, 1.0f, q, head_dim_, k, head_dim_,
                    0.0f, p.scores, tp, {images * H, mat, mat, Tp * Tp}, one);
  be_->softmax_forward(images * H * Tp, tokens_, tp, scale, p.scores, p.probs, p.probs16);
  scores_only.reset();  // back to the cache
  Tensor heads_context(*be_, {images, H, Tp, hd});
  be_->gemm_batched(Trans::kNo, Trans::kNo, tp, head_dim_, tp, 1.0f, {p.probs, p.probs16}, tp, v,
                    head_dim_, 0.0f, heads_context.data(), head_dim_,
                    {images * H, Tp * Tp, mat, mat}, one);
  // Only GEMMs read the context (out's forward and weight gradient).
  float* context = gemm_only_values(context_, {rows, D});
  uint16_t* context16 = bf16_copy(context16_, {rows, D});
  be_->unpack_heads(images, tokens_, tp, heads_, head_dim_, 1, heads_context.data(), context,
                    context16, nullptr);
  out_.forward(*be_, {context, context16}, rows, y);
}

void SelfAttention::backward_head_major(GemmInput x, GemmInput dy, float* dx, Workspace& ws) {
  const int64_t images = images_, rows = images * tokens_, D = dim_, hd = head_dim_, H = heads_;
  const int64_t Tp = padded_tokens(), mat = Tp * hd, slab = images * H * mat;
  const int tp = static_cast<int>(Tp);
  const float scale = score_scale();
  const BatchLevel one{1, 0, 0, 0};
  float* dcontext = ws.get(Scratch::kContextGrad, {rows, D});
  const GemmInput dy_in = ws.shared_input(Scratch::kOutputGrad, dy, {rows, D});
  out_.backward(*be_, {gemm_only_values(context_), context16_.data()}, dy_in, rows, dcontext);
  // The context gradient, head-major: read by two GEMMs.
  float* dheads_context = ws.get(Scratch::kHeadsContextGrad, {images, H, Tp, hd});
  uint16_t* dheads_context16 = ws.get_bf16(Scratch::kHeadsContextGrad, {images, H, Tp, hd});
  be_->pack_heads(images, tokens_, tp, heads_, head_dim_, 1, dcontext, nullptr, dheads_context,
                  dheads_context16);
  const GemmInput dc(dheads_context, dheads_context16);
  const GemmInput q(gemm_only_values(qkv_act_), qkv16_.data());
  const GemmInput k = q.offset(slab), v = q.offset(2 * slab);
  const GemmInput p(gemm_only_values(probs_), probs16_.data());
  float* dprobs = ws.get(Scratch::kScoresGrad, {images, H, Tp, Tp});
  uint16_t* dprobs16 = ws.get_bf16(Scratch::kScoresGrad, {images, H, Tp, Tp});
  float* dheads = ws.get(Scratch::kHeadsGrad, {3, images, H, Tp, hd});
  // dP_bh = dC_bh V_bh^T ; dV_bh = P_bh^T dC_bh
  be_->gemm_batched(Trans::kNo, Trans::kYes, tp, tp, head_dim_, 1.0f, dc, head_dim_, v, head_dim_,
                    0.0f, dprobs, tp, {images * H, mat, mat, Tp * Tp}, one);
  be_->gemm_batched(Trans::kYes, Trans::kNo, tp, head_dim_, tp, 1.0f, p, tp, dc, head_dim_, 0.0f,
                    dheads + 2 * slab, head_dim_, {images * H, Tp * Tp, mat, mat}, one);
  float* dscores = be_->bf16_copies_suffice() ? nullptr : dprobs;  // as in backward()
  be_->softmax_backward(images * H * Tp, tokens_, tp, scale, p.f32, bf16_copy(probs16_), dprobs,
                        dscores, dprobs16);
  const GemmInput ds(dscores, dprobs16);
  // dQ_bh = dS_bh K_bh ; dK_bh = dS_bh^T Q_bh
  be_->gemm_batched(Trans::kNo, Trans::kNo, tp, head_dim_, tp, 1.0f, ds, tp, k, head_dim_, 0.0f,
                    dheads, head_dim_, {images * H, Tp * Tp, mat, mat}, one);
  be_->gemm_batched(Trans::kYes, Trans::kNo, tp, head_dim_, tp, 1.0f, ds, tp, q, head_dim_, 0.0f,
                    dheads + slab, head_dim_, {images * H, Tp * Tp, mat, mat}, one);
  // Back to rows [B*T, 3D], written with its bf16 copy (read by two GEMMs),
  // the projection's bias gradient taken on the way; under bf16 only the
  // GEMMs read it after, so the copy alone is written.
  float* dqkv = be_->bf16_copies_suffice() ? nullptr : ws.get(Scratch::kQkvGrad, {rows, 3 * D});
  uint16_t* dqkv16 = ws.get_bf16(Scratch::kQkvGrad, {rows, 3 * D});
  be_->unpack_heads(images, tokens_, tp, heads_, head_dim_, 3, dheads, dqkv, dqkv16,
                    qkv_.bias_grad());
  qkv_.matmul_backward(*be_, x, {dqkv, dqkv16}, rows, dx);
}

}  // namespace vmoe
