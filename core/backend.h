// The backend interface: memory and every numeric op the model runs.
//
// Ops take raw device pointers and sizes, row-major, no ownership; layers
// decide what to store. The CPU backend calls cblas_sgemm for every matrix
// product; a CUDA backend implements the same calls with cuBLAS and kernels
// built from the bodies in core/math.h. Conventions:
//  * "accumulate" outputs (gradients) are added to, never overwritten;
//  * row counts are int64, feature sizes int.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <new>
#include <string>
#include <vector>

#include "core/backend_types.h"
#include "core/check.h"
#include "core/math.h"
#include "core/schedule.h"

namespace vmoe {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- timing (benchmarks, core/phase_timer.h) ----------------------------
  // A point on the timeline the work runs on (the host's clock, unless the
  // backend queues work asynchronously: CUDA events on a GPU), and the
  // seconds between two, valid once the work queued before the later one has
  // finished (synchronize()).
  virtual int time_mark() { return host_marks_.mark(); }
  virtual double seconds_between(int from, int to) { return host_marks_.seconds(from, to); }
  virtual void clear_time_marks() { host_marks_.clear(); }

  // ---- memory --------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr) = 0;
  // Counted copies between host and device memory, and waits (HostTraffic).
  void copy_to_device(void* dst, const void* host_src, size_t bytes) {
    ++traffic_.to_device;
    copy_to_device_impl(dst, host_src, bytes);
  }
  void copy_to_host(void* host_dst, const void* src, size_t bytes) {
    ++traffic_.to_host;
    copy_to_host_impl(host_dst, src, bytes);
  }
  void synchronize() {
    ++traffic_.syncs;
    synchronize_impl();
  }
  // A batch's pixels to the device: dst[i] = host[i] / 127.5 - 1 (uint8 in,
  // [-1, 1] floats out, scaled on the device: a quarter of the bytes travel).
  // On a GPU the copy runs on a stream of its own, overlapping the compute
  // work queued before it and ordered before the work queued after it; it
  // returns once `host` may be reused. Counted as one copy to the device.
  void upload_pixels(int64_t n, const uint8_t* host, float* dst) {
    ++traffic_.to_device;
    upload_pixels_impl(n, host, dst);
  }
  const HostTraffic& traffic() const { return traffic_; }
  void set_wait_observer(WaitObserver* observer) { wait_observer_ = observer; }
  // Free device memory in bytes, or -1 for a backend whose memory is the
  // host's (the CPU).
  virtual int64_t device_memory_free() { return -1; }
  // Host memory for buffers that are copied to the device often (pinned on a
  // GPU, so copies run at full speed and asynchronously); any thread may call.
  virtual void* allocate_host(size_t bytes);
  virtual void deallocate_host(void* ptr);
  // ---- captured steps (a CUDA graph on a GPU) ------------------------------
  // capture() runs `body` once while recording the work it queues; replay()
  // queues that work again in one call, from the same addresses. body must
  // queue device work only (host state it changes is not changed again by a
  // replay) and allocate nothing new once warm. Returns false, having run
  // nothing, where recording failed (the caller runs body itself). The CPU
  // records the closure and replays by calling it: the tests' stand-in.
  virtual bool capture(const std::function<void()>& body) = 0;
  virtual void replay() = 0;
  // Captured, and no memory the recording uses freed since (caching_allocator.h).
  virtual bool capture_valid() const = 0;
  virtual void drop_capture() = 0;

  // Device to device.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  // bytes of x = 0.
  virtual void zero(void* x, size_t bytes) = 0;

  // The precision of gemm/gemm_batched inputs and of exchange buffers.
  Precision precision() const { return precision_; }
  void set_precision(Precision p) { precision_ = p; }
  // Whether GEMMs use the bf16 copies they are given (default) or convert
  // every input as if none were given: the reference the copies are tested
  // against (same bits either way).
  void set_use_bf16_copies(bool on) { use_bf16_copies_ = on; }
  // Whether GEMMs read only the bf16 copies of their inputs: then an
  // activation that only GEMMs read is kept as bf16 alone (no fp32 values).
  bool bf16_copies_suffice() const { return precision_ == Precision::kBf16 && use_bf16_copies_; }
  const Bf16Conversions& bf16_conversions() const { return conversions_; }
  // Records the fp32 address of every conversion counted (tests; null: off).
  void log_bf16_conversions(std::vector<const float*>* log) { conversion_log_ = log; }
  // fp32 GEMMs on TF32 tensor cores (10-bit mantissa inputs, fp32
  // accumulation) where the device has them; false if it has none (the CPU).
  virtual bool set_tf32(bool /*on*/) { return false; }
  // y = bfloat16(x) (round to nearest even) and back, element-wise. to_bf16
  // is counted (Bf16Conversions::explicit_calls) under Precision::kBf16.
  void to_bf16(int64_t n, const float* x, uint16_t* y) {
    if (precision_ == Precision::kBf16) {
      ++conversions_.explicit_calls;
      if (conversion_log_ != nullptr) conversion_log_->push_back(x);
    }
    to_bf16_impl(n, x, y);
  }
  virtual void from_bf16(int64_t n, const uint16_t* x, float* y) = 0;

  // ---- matrix products -----------------------------------------------------
  // C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C (row-major).
  void gemm(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a, int lda, GemmInput b,
            int ldb, float beta, float* c, int ldc) {
    if (m == 0 || n == 0) return;
    prepare_inputs(k, a, b);
    gemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  // The same GEMM for every (i, j), i < outer.count, j < inner.count, with
  // A at a + i*outer.a + j*inner.a (likewise B, C).
  void gemm_batched(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a, int lda,
                    GemmInput b, int ldb, float beta, float* c, int ldc, BatchLevel outer,
                    BatchLevel inner) {
    if (m == 0 || n == 0 || outer.count == 0 || inner.count == 0) return;
    prepare_inputs(k, a, b);
    gemm_batched_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, outer, inner);
  }
  // gemm_batched with beta 0 and C written as bfloat16 alone: fp32
  // accumulation, each value rounded as it is stored (an output only bf16
  // reads consume: fc1's, which bias + GELU reads). Under Precision::kBf16.
  void gemm_batched_to_bf16(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a,
                            int lda, GemmInput b, int ldb, uint16_t* c16, int ldc, BatchLevel outer,
                            BatchLevel inner) {
    VMOE_ASSERT(precision_ == Precision::kBf16);
    if (m == 0 || n == 0 || outer.count == 0 || inner.count == 0) return;
    prepare_inputs(k, a, b);
    gemm_batched_to_bf16_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, c16, ldc, outer, inner);
  }

  // ---- element-wise ----------------------------------------------------------
  virtual void fill(float* x, int64_t n, float value) = 0;
  virtual void scale(float* x, int64_t n, float alpha) = 0;
  // y += alpha * x
  virtual void axpy(int64_t n, float alpha, const float* x, float* y) = 0;
  // y[r, :] += bias; y16 (nullable) = bfloat16(y).
  virtual void add_bias(int64_t rows, int cols, const float* bias, float* y, uint16_t* y16) = 0;
  void add_bias(int64_t rows, int cols, const float* bias, float* y) {
    add_bias(rows, cols, bias, y, nullptr);
  }
  // dbias += sum_r dy[r, :]
  virtual void bias_grad(int64_t rows, int cols, const float* dy, float* dbias) = 0;
  // g = gelu(a + bias[r, :]); its slope gelu'(a + bias) (computed with the
  // same exp) is what backward needs: written over a, or with slope16 given
  // (under bf16) as bfloat16 there, a only read. g16 (nullable) =
  // bfloat16(g); g may be null when g16 is not (bf16_copies_suffice(): only
  // the copy is read).
  void bias_gelu(int64_t rows, int cols, const float* bias, float* a, float* g,
                 uint16_t* g16 = nullptr) {
    expert_bias_gelu(1, rows, cols, bias, a, nullptr, g, g16, nullptr);
  }
  // The same three over the experts' expert-major rows [experts, rows, cols]
  // with their biases [experts, cols]: one call for all local experts, no
  // host loop over them.
  virtual void expert_add_bias(int experts, int64_t rows, int cols, const float* bias,
                               float* y) = 0;
  // a16 (with slope16): the input as bfloat16 (fc1's output under bf16),
  // read instead of a (then null).
  virtual void expert_bias_gelu(int experts, int64_t rows, int cols, const float* bias, float* a,
                                const uint16_t* a16, float* g, uint16_t* g16,
                                uint16_t* slope16) = 0;
  void expert_bias_gelu(int experts, int64_t rows, int cols, const float* bias, float* a, float* g,
                        uint16_t* g16) {
    expert_bias_gelu(experts, rows, cols, bias, a, nullptr, g, g16, nullptr);
  }
  virtual void expert_bias_grad(int experts, int64_t rows, int cols, const float* dy,
                                float* dbias) = 0;
  // da = dg * s over expert-major rows [experts, rows, cols] (experts = 1: a
  // dense layer), s = bias_gelu's slope: slope16 where given, else a; da16
  // (nullable) = bfloat16(da); dbias[e, :] (nullable) += the sums of da over
  // expert e's rows: the gradient of the bias before the GELU, taken in the
  // same pass over da. da may be null when da16 is not
  // (bf16_copies_suffice(): only GEMMs read da).
  // dg16 (nullable): dg as bfloat16 (fc2's input gradient under bf16), read
  // instead of dg; it may be da16 (each value read before it is written).
  virtual void gelu_backward(int experts, int64_t rows, int cols, const float* a,
                             const uint16_t* slope16, const float* dg, const uint16_t* dg16,
                             float* da, uint16_t* da16, float* dbias) = 0;
  void gelu_backward(int experts, int64_t rows, int cols, const float* a, const float* dg,
                     float* da, uint16_t* da16, float* dbias) {
    gelu_backward(experts, rows, cols, a, nullptr, dg, nullptr, da, da16, dbias);
  }
  // x = tanh(x) in place (the pre-logits layer).
  virtual void tanh_forward(int64_t n, float* x) = 0;
  // dy *= 1 - y^2, y = tanh's output.
  virtual void tanh_backward(int64_t n, const float* y, float* dy) = 0;

  // ---- normalisation and softmax ---------------------------------------------
  // y = (x - mean) * rstd * gamma + beta per row; saves mean and rstd [rows];
  // y16 (nullable) = bfloat16(y).
  virtual void layernorm_forward(int64_t rows, int cols, float eps, const float* x,
                                 const float* gamma, const float* beta, float* y, uint16_t* y16,
                                 float* mean, float* rstd) = 0;
  void layernorm_forward(int64_t rows, int cols, float eps, const float* x, const float* gamma,
                         const float* beta, float* y, float* mean, float* rstd) {
    layernorm_forward(rows, cols, eps, x, gamma, beta, y, nullptr, mean, rstd);
  }
  // The residual add fused into the LayerNorm after it: x += residual, then
  // layernorm_forward of x (x keeps the sum: the residual stream).
  virtual void add_layernorm_forward(int64_t rows, int cols, float eps, const float* residual,
                                     float* x, const float* gamma, const float* beta, float* y,
                                     uint16_t* y16, float* mean, float* rstd) = 0;
  // dx += ..., dgamma += ..., dbeta += ...; dx16 (nullable) = bfloat16(dx)
  // after the update (the residual stream's gradient, which GEMMs read next).
  virtual void layernorm_backward(int64_t rows, int cols, const float* x, const float* gamma,
                                  const float* mean, const float* rstd, const float* dy, float* dx,
                                  uint16_t* dx16, float* dgamma, float* dbeta) = 0;
  // p[r, :cols] = softmax(scale * x[r, :cols]), rows ld apart (ld >= cols;
  // x's columns between are not read, p's are set to 0); p16 (nullable, same
  // layout) = bfloat16(p). p may be x (in place), or null when p16 is not
  // (x then only read: the attention's probabilities under bf16).
  virtual void softmax_forward(int64_t rows, int cols, int ld, float scale, float* x, float* p,
                               uint16_t* p16) = 0;
  void softmax_forward(int64_t rows, int cols, int ld, float scale, float* x, uint16_t* x16) {
    softmax_forward(rows, cols, ld, scale, x, x, x16);
  }
  void softmax_forward(int64_t rows, int cols, float scale, float* x, uint16_t* x16 = nullptr) {
    softmax_forward(rows, cols, cols, scale, x, x, x16);
  }
  // d = scale * p * (dp - <p, dp>): dL/dlogits from dp = dL/dp, rows ld apart
  // as in softmax_forward (the gap set to 0); d may be dp (in place), or null
  // when d16 is not (bf16_copies_suffice(): only GEMMs read d); d16
  // (nullable) = bfloat16(d). p is read from p16 where that is given (the
  // probabilities kept as bf16 alone under bf16), else from p.
  virtual void softmax_backward(int64_t rows, int cols, int ld, float scale, const float* p,
                                const uint16_t* p16, const float* dp, float* d, uint16_t* d16) = 0;
  void softmax_backward(int64_t rows, int cols, int ld, float scale, const float* p,
                        const float* dp, float* d, uint16_t* d16) {
    softmax_backward(rows, cols, ld, scale, p, nullptr, dp, d, d16);
  }
  // In place, rows packed.
  void softmax_backward(int64_t rows, int cols, float scale, const float* p, float* d,
                        uint16_t* d16 = nullptr) {
    softmax_backward(rows, cols, cols, scale, p, d, d, d16);
  }

  // ---- ViT embedding and pooling -----------------------------------------------
  // images [B, H, W, C] -> patches [B * (H/P) * (W/P), P * P * C], patch vector in (py, px, c) order.
  virtual void patchify(int64_t batch, int height, int width, int channels, int patch,
                        const float* images, float* patches) = 0;
  // tokens[b, t0 + i, :] = proj[b, i, :] + bias + pos[t0 + i]; tokens[b, 0, :] = cls + pos[0]
  // when cls is given (t0 = 1), else t0 = 0. T = tokens per image.
  virtual void embed_tokens(int64_t batch, int patches, int dim, const float* proj,
                            const float* bias, const float* cls, const float* pos,
                            float* tokens) = 0;
  // Backward of embed_tokens: dproj = dtokens rows of patches; dbias, dcls, dpos accumulate.
  virtual void embed_tokens_backward(int64_t batch, int patches, int dim, const float* dtokens,
                                     float* dproj, float* dbias, float* dcls, float* dpos) = 0;
  // out[b, :] = x[b, row, :] (token pooling) or mean over rows (gap pooling).
  virtual void pool_rows(int64_t batch, int tokens, int dim, bool mean, const float* x,
                         float* out) = 0;
  // dx[b, ...] += the gradient of pool_rows (the same row, or spread 1/T over all).
  virtual void pool_rows_backward(int64_t batch, int tokens, int dim, bool mean,
                                  const float* dout, float* dx) = 0;

  // ---- attention heads, head-major (core/attention.h) ----------------------------
  // y[s, b, h, t, c] = x[b T + t, (s H + h) hd + c] for t < T, 0 for T <= t <
  // padded: `slabs` groups of H heads (3 for q|k|v) of `images` images; x is
  // [images T, slabs H hd], y [slabs, images, H, padded, hd]; y16 (nullable)
  // = bfloat16(y). bias (nullable, [slabs H hd]) is added to the rows t < T
  // on the way (the projection's bias, fused); y may be null when y16 is not
  // (bf16_copies_suffice(): only GEMMs read y).
  virtual void pack_heads(int64_t images, int tokens, int padded, int heads, int head_dim,
                          int slabs, const float* x, const float* bias, float* y,
                          uint16_t* y16) = 0;
  // The inverse, the padding dropped: x = rows t < T of y; x16 (nullable) =
  // bfloat16(x); dbias (nullable, [slabs H hd]) += the sums of x's rows (the
  // projection's bias gradient, taken on the way). x may be null when x16
  // is not (bf16_copies_suffice(): only GEMMs read x after).
  virtual void unpack_heads(int64_t images, int tokens, int padded, int heads, int head_dim,
                            int slabs, const float* y, float* x, uint16_t* x16, float* dbias) = 0;
  // Attention's layout: 0 = strided views of each head in the q|k|v
  // projection (no copies); n > 0 = heads packed head-major with tokens
  // padded to a multiple of n, so its batched GEMMs are single launches with
  // sizes and strides that tensor-core kernels take (8 on a GPU). Default 0
  // on the CPU, 8 on the GPU (see core/attention.h).
  int attention_pad_to() const { return attention_pad_to_; }
  void set_attention_pad_to(int n) { attention_pad_to_ = n; }
  // The strided layout's row stride of the scores and probabilities for T
  // tokens: T rounded up to score_row_align_ (gaps zeroed). The CPU packs
  // rows (1): OpenBLAS zeroes a packed beta = 0 output with one memset and a
  // gapped one row by row, which made attention's 50 x 50 score GEMMs a third
  // slower. The GPU aligns rows to 8 floats for its vector loads.
  int scores_ld(int tokens) const {
    return (tokens + score_row_align_ - 1) / score_row_align_ * score_row_align_;
  }

  // ---- losses -------------------------------------------------------------------
  // Softmax cross-entropy per row; rows with weight 0 contribute nothing.
  // loss[r] = w[r] * (logsumexp(z_r) - z_r[label_r]);
  // dlogits[r] = grad_scale * w[r] * (softmax(z_r) - onehot(label_r)).
  virtual void softmax_cross_entropy(int64_t rows, int classes, const float* logits,
                                     const int32_t* labels, const float* weight, float grad_scale,
                                     float* loss, float* dlogits) = 0;
  // Sigmoid cross-entropy summed over classes, per row, against 0/1 targets [rows, classes].
  virtual void sigmoid_cross_entropy(int64_t rows, int classes, const float* logits,
                                     const float* targets, const float* weight, float grad_scale,
                                     float* loss, float* dlogits) = 0;

  // ---- optimisers and reductions --------------------------------------------------
  // Starts an optimiser step where it runs: *s = the rate schedule.at(*step)
  // and Adam's bias corrections for update *step + 1 (core/math.h
  // update_scalars), then ++*step; step and s in device memory. The updates
  // read s there: no step-dependent scalar crosses from the host (what
  // replaying a captured step needs). grad_scale (device, nullable: 1) is
  // the clipping factor the updates apply as they read each gradient: no
  // pass of its own over the gradients.
  virtual void begin_update(const LrSchedule& schedule, float beta1, float beta2,
                            const float* grad_scale, int64_t* step, UpdateScalars* s) = 0;
  // One update of `param` (and its state) with the step's scalars s (device);
  // param16 (nullable) = bfloat16(param) afterwards: the weights' bf16 copy,
  // refreshed in the same pass.
  virtual void adam_update(int64_t n, float beta1, float beta2, float eps, float weight_decay,
                           const UpdateScalars* s, const float* grad, float* param,
                           uint16_t* param16, float* m, float* v) = 0;
  virtual void sgd_update(int64_t n, float momentum, float weight_decay, const UpdateScalars* s,
                          const float* grad, float* param, uint16_t* param16, float* buf) = 0;
  // *out = sum x^2, in double precision (device memory; overwrites).
  virtual void sum_squares(int64_t n, const float* x, double* out) = 0;
  // Gradient clipping by the global norm, on the device (core/math.h
  // clip_factor): *norm = sqrt(sq[0] + sq[1] / expert_divisor) from the dense
  // and expert sums of squares; *scale = max_norm / *norm when max_norm > 0
  // and *norm > max_norm, else 1: the optimiser applies it as it reads each
  // gradient (begin_update's grad_scale).
  virtual void clip_scale(const double* sq, double expert_divisor, float max_norm, double* norm,
                          float* scale) = 0;
  // Mixup of rows 2p and 2p + 1 of x [2 * pairs, n] with weight lambda
  // (core/math.h mix_pair), in place.
  virtual void mix_pairs(int64_t pairs, int64_t n, float lambda, float* x) = 0;
  // acc[c] += scale * sum over rows of x[r, c], in double (metrics on the device).
  virtual void accumulate_columns(int64_t rows, int cols, const float* x, double scale,
                                  double* acc) = 0;
  // *hits += rows r with mask[r] != 0 (mask nullable: all) whose largest
  // x[r, :] (ties: the lower index) is at label[r].
  virtual void count_top1_hits(int64_t rows, int cols, const float* x, const int32_t* label,
                               const float* mask, int64_t* hits) = 0;

  // ---- mixture of experts (semantics in parallel/README.md) ----------------------
  // x[i] += scale * normal_at(key, stream, first + *step * per_step + i):
  // the same numbers on any device; step (nullable: 0) in device memory, the
  // optimiser's counter during training (not a host argument per step).
  virtual void add_normal_noise(int64_t n, float scale, uint64_t key, uint64_t stream,
                                uint64_t first, const int64_t* step, uint64_t per_step,
                                float* x) = 0;
  // The k largest values of each row, descending (ties: lower index first).
  virtual void top_k(int64_t rows, int cols, int k, const float* x, int32_t* index,
                     float* value) = 0;
  // Slot of each (item, choice) in its expert's buffer of `capacity` per group,
  // or -1 when dropped or masked: choices k-major, items ordered by their top-1
  // gate (descending, stable) when batch_priority, a slot is the running count
  // of earlier assignments to that expert. item_mask (0/1) may be null; item i
  // reads item_mask[i / mask_every] (a per-image mask for tokens).
  virtual void assign_slots(int64_t groups, int items, int k, int experts, int capacity,
                            bool batch_priority, const int32_t* expert, const float* gate,
                            const float* item_mask, int mask_every, int32_t* slot) = 0;
  // The expert-buffer row of every (item, choice): row[i * k + c] is the first
  // of the item's item_rows rows (1 for a token, T for a whole image), or -1
  // when the choice is dropped. Expert e owns rows [e, groups, capacity,
  // item_rows], empty slots included: a fixed shape, known before the step,
  // that the all-to-all exchanges and the experts compute whole.
  virtual void moe_buffer_rows(int64_t groups, int items, int k, int experts, int capacity,
                               int item_rows, const int32_t* expert, const int32_t* slot,
                               int32_t* row) = 0;
  // Whether expert buffers may be packed (moe_packed_buffer_rows) and their
  // GEMMs skip the empty tail (BatchLevel::live): where a product's shape is
  // chosen on the host for each call (the CPU). CUDA keeps every shape fixed
  // (captured graphs) and computes whole buffers.
  virtual bool skips_empty_slots() const { return false; }
  // As moe_buffer_rows, but packed: expert e's chunk of groups * capacity *
  // item_rows rows is `parts` equal parts (groups / parts groups each: what
  // one rank receives of it), and each part's kept choices fill its front,
  // group after group; live[e * parts + p] = how many rows they fill. The
  // rest of each part stays empty. Only where skips_empty_slots().
  virtual void moe_packed_buffer_rows(int64_t /*groups*/, int /*items*/, int /*k*/, int /*experts*/,
                                      int /*parts*/, int /*capacity*/, int /*item_rows*/,
                                      const int32_t* /*expert*/, const int32_t* /*slot*/,
                                      int32_t* /*row*/, int32_t* /*live*/) {
    VMOE_CHECK(false, name(), ": expert buffers keep their full capacity here");
  }
  // buf[row[i, c] + r] = x[i * item_rows + r] for kept choices (other rows
  // untouched); buf16 (nullable) gets the same rows' bf16 copy. buf may be
  // null when buf16 is not: the copy alone (an exchange under bf16 sends
  // only it).
  virtual void moe_dispatch(int64_t items, int k, int item_rows, int dim, const float* x,
                            const int32_t* row, float* buf, uint16_t* buf16) = 0;
  // y[i] = sum over kept choices of gate[i, c] * buf[row[i, c]] (0 if none kept).
  virtual void moe_combine(int64_t items, int k, int item_rows, int dim, const float* buf,
                           const int32_t* row, const float* gate, float* y) = 0;
  // dbuf[row[i, c]] = gate[i, c] * dy[i]; dgate[i, c] += <dy[i], buf[row[i, c]]>;
  // dbuf16 (nullable) gets the written rows' bf16 copy; dbuf may be null when
  // dbuf16 is not (the copy alone, as moe_dispatch's).
  virtual void moe_combine_backward(int64_t items, int k, int item_rows, int dim, const float* dy,
                                    const float* buf, const int32_t* row, const float* gate,
                                    float* dbuf, float* dgate, uint16_t* dbuf16) = 0;
  // dx[i] = sum over kept choices of dbuf[row[i, c]] (0 if none kept).
  virtual void moe_dispatch_backward(int64_t items, int k, int item_rows, int dim,
                                     const float* dbuf, const int32_t* row, float* dx) = 0;
  // dst[i, o, :] = src[o, i, :]: src is [outer, inner, block] floats (e.g.
  // (source rank, expert) after an all-to-all, into expert-major order).
  virtual void transpose_blocks(int64_t outer, int64_t inner, int64_t block, const float* src,
                                float* dst) = 0;
  // The same for bfloat16 payloads (the expert exchange under bf16).
  virtual void transpose_blocks(int64_t outer, int64_t inner, int64_t block, const uint16_t* src,
                                uint16_t* dst) = 0;
  // d[r, index[r, c]] += dvalue[r, c]: the gradient of top_k's values.
  virtual void top_k_backward(int64_t rows, int cols, int k, const int32_t* index,
                              const float* dvalue, float* d) = 0;
  // Importance, load, GShard and z losses per group, and their gradient.
  virtual void router_aux_losses(const RouterAuxArgs& args) = 0;
  // counts[e] += unmasked choices of expert e; counts[E] += those dropped.
  virtual void count_assignments(int64_t items, int k, int experts, const int32_t* expert,
                                 const int32_t* slot, const float* item_mask,
                                 int mask_every, int64_t* counts) = 0;

 protected:
  virtual void to_bf16_impl(int64_t n, const float* x, uint16_t* y) = 0;
  // gemm and gemm_batched, with m, n and both batch counts positive; a bf16
  // copy in an input is to be used only under Precision::kBf16.
  virtual void gemm_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a, int lda,
                         GemmInput b, int ldb, float beta, float* c, int ldc) = 0;
  virtual void gemm_batched_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a,
                                 int lda, GemmInput b, int ldb, float beta, float* c, int ldc,
                                 BatchLevel outer, BatchLevel inner) = 0;
  virtual void gemm_batched_to_bf16_impl(Trans ta, Trans tb, int m, int n, int k, float alpha,
                                         GemmInput a, int lda, GemmInput b, int ldb, uint16_t* c16,
                                         int ldc, BatchLevel outer, BatchLevel inner) = 0;
  virtual void copy_to_device_impl(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host_impl(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void upload_pixels_impl(int64_t n, const uint8_t* host, float* dst) = 0;
  virtual void synchronize_impl() {}

  // Marks a host wait for the device for the WaitObserver, if any.
  class WaitScope {
   public:
    WaitScope(const Backend& backend, const char* what) : observer_(backend.wait_observer_) {
      if (observer_ != nullptr) observer_->wait_begins(what);
    }
    ~WaitScope() {
      if (observer_ != nullptr) observer_->wait_ends();
    }
    WaitScope(const WaitScope&) = delete;
    WaitScope& operator=(const WaitScope&) = delete;

   private:
    WaitObserver* observer_;
  };

  Precision precision_ = Precision::kFp32;
  int attention_pad_to_ = 0;
  int score_row_align_ = 1;

 private:
  // Counts the inputs a bf16 GEMM will convert; drops the copies when they
  // are switched off.
  void prepare_inputs(int k, GemmInput& a, GemmInput& b) {
    if (precision_ != Precision::kBf16 || k == 0) return;
    for (GemmInput* in : {&a, &b}) {
      if (!use_bf16_copies_) in->bf16 = nullptr;
      if (in->bf16 != nullptr) continue;
      ++conversions_.gemm_inputs;
      if (conversion_log_ != nullptr) conversion_log_->push_back(in->f32);
    }
  }

  WaitObserver* wait_observer_ = nullptr;
  bool use_bf16_copies_ = true;
  Bf16Conversions conversions_;
  std::vector<const float*>* conversion_log_ = nullptr;
  HostTraffic traffic_;
  HostTimeMarks host_marks_;
};

inline void* Backend::allocate_host(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc wants a multiple
  void* ptr = std::aligned_alloc(64, rounded > 0 ? rounded : 64);
  if (ptr == nullptr) throw std::bad_alloc();
  return ptr;
}

inline void Backend::deallocate_host(void* ptr) { std::free(ptr); }

}  // namespace vmoe
