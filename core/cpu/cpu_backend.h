// The CPU backend: OpenBLAS cblas_sgemm for every matrix product, plain
// vectorisable loops (one thread) over the bodies in core/math.h for the rest.
// One rank per core is the intended use; BLAS threads come from
// OPENBLAS_NUM_THREADS.
#pragma once

#include "core/backend.h"
#include "core/caching_allocator.h"

namespace vmoe {

// One cblas_sgemm call's shape (CpuBackend::log_gemms), and how long it took.
struct GemmShape {
  Trans ta, tb;
  int m, n, k, lda, ldb, ldc;
  float beta;          // 0: C is overwritten; else read and added to
  double seconds = 0;  // the call's own time (where log_gemms was asked to time)
};

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  std::string name() const override { return "cpu"; }
  // Memory is cached like the GPU's: activations keep their pages from one
  // step to the next instead of being unmapped and faulted in again.
  const CachingAllocator& allocator() const { return allocator_; }

  // While set, every GEMM's shape is appended to *log (null: stop), and its
  // time where asked (two clock reads a call): the step benchmark replays a
  // step's GEMMs alone, to time OpenBLAS at its shapes, and compares their
  // times in the step.
  void log_gemms(std::vector<GemmShape>* log, bool time_each = false) {
    gemm_log_ = log;
    time_gemms_ = log != nullptr && time_each;
  }

  void* allocate(size_t bytes) override;
  void deallocate(void* ptr) override;
  bool capture(const std::function<void()>& body) override;
  void replay() override;
  bool capture_valid() const override;
  void drop_capture() override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* x, size_t bytes) override;
  void from_bf16(int64_t n, const uint16_t* x, float* y) override;
  // The forms without bf16 copies (Backend's overloads).
  using Backend::add_bias;
  using Backend::bias_gelu;
  using Backend::expert_bias_gelu;
  using Backend::gelu_backward;
  using Backend::layernorm_forward;
  using Backend::softmax_backward;
  using Backend::softmax_forward;

  void fill(float* x, int64_t n, float value) override;
  void scale(float* x, int64_t n, float alpha) override;
  void axpy(int64_t n, float alpha, const float* x, float* y) override;
  void add_bias(int64_t rows, int cols, const float* bias, float* y, uint16_t* y16) override;
  void bias_grad(int64_t rows, int cols, const float* dy, float* dbias) override;
  void expert_add_bias(int experts, int64_t rows, int cols, const float* bias, float* y) override;
  void expert_bias_gelu(int experts, int64_t rows, int cols, const float* bias, float* a,
                        const uint16_t* a16, float* g, uint16_t* g16, uint16_t* slope16) override;
  void expert_bias_grad(int experts, int64_t rows, int cols, const float* dy,
                        float* dbias) override;
  void gelu_backward(int experts, int64_t rows, int cols, const float* a, const uint16_t* slope16,
                     const float* dg, const uint16_t* dg16, float* da, uint16_t* da16,
                     float* dbias) override;
  void tanh_forward(int64_t n, float* x) override;
  void tanh_backward(int64_t n, const float* y, float* dy) override;

  void layernorm_forward(int64_t rows, int cols, float eps, const float* x, const float* gamma,
                         const float* beta, float* y, uint16_t* y16, float* mean,
                         float* rstd) override;
  void add_layernorm_forward(int64_t rows, int cols, float eps, const float* residual, float* x,
                             const float* gamma, const float* beta, float* y, uint16_t* y16,
                             float* mean, float* rstd) override;
  void layernorm_backward(int64_t rows, int cols, const float* x, const float* gamma,
                          const float* mean, const float* rstd, const float* dy, float* dx,
                          uint16_t* dx16, float* dgamma, float* dbeta) override;
  void softmax_forward(int64_t rows, int cols, int ld, float scale, float* x, float* p,
                       uint16_t* p16) override;
  void softmax_backward(int64_t rows, int cols, int ld, float scale, const float* p,
                        const uint16_t* p16, const float* dp, float* d, uint16_t* d16) override;

  void patchify(int64_t batch, int height, int width, int channels, int patch,
                const float* images, float* patches) override;
  void embed_tokens(int64_t batch, int patches, int dim, const float* proj, const float* bias,
                    const float* cls, const float* pos, float* tokens) override;
  void embed_tokens_backward(int64_t batch, int patches, int dim, const float* dtokens,
                             float* dproj, float* dbias, float* dcls, float* dpos) override;
  void pool_rows(int64_t batch, int tokens, int dim, bool mean, const float* x,
                 float* out) override;
  void pool_rows_backward(int64_t batch, int tokens, int dim, bool mean, const float* dout,
                          float* dx) override;
  void pack_heads(int64_t images, int tokens, int padded, int heads, int head_dim, int slabs,
                  const float* x, const float* bias, float* y, uint16_t* y16) override;
  void unpack_heads(int64_t images, int tokens, int padded, int heads, int head_dim, int slabs,
                    const float* y, float* x, uint16_t* x16, float* dbias) override;

  void softmax_cross_entropy(int64_t rows, int classes, const float* logits,
                             const int32_t* labels, const float* weight, float grad_scale,
                             float* loss, float* dlogits) override;
  void sigmoid_cross_entropy(int64_t rows, int classes, const float* logits,
                             const float* targets, const float* weight, float grad_scale,
                             float* loss, float* dlogits) override;

  void begin_update(const LrSchedule& schedule, float beta1, float beta2, const float* grad_scale,
                    int64_t* step, UpdateScalars* s) override;
  void adam_update(int64_t n, float beta1, float beta2, float eps, float weight_decay,
                   const UpdateScalars* s, const float* grad, float* param, uint16_t* param16,
                   float* m, float* v) override;
  void sgd_update(int64_t n, float momentum, float weight_decay, const UpdateScalars* s,
                  const float* grad, float* param, uint16_t* param16, float* buf) override;
  void sum_squares(int64_t n, const float* x, double* out) override;
  void clip_scale(const double* sq, double expert_divisor, float max_norm, double* norm,
                  float* scale) override;
  void mix_pairs(int64_t pairs, int64_t n, float lambda, float* x) override;
  void accumulate_columns(int64_t rows, int cols, const float* x, double scale,
                          double* acc) override;
  void count_top1_hits(int64_t rows, int cols, const float* x, const int32_t* label,
                       const float* mask, int64_t* hits) override;

  // Mixture of experts (cpu_backend_moe.cpp).
  void add_normal_noise(int64_t n, float scale, uint64_t key, uint64_t stream, uint64_t first,
                        const int64_t* step, uint64_t per_step, float* x) override;
  void top_k(int64_t rows, int cols, int k, const float* x, int32_t* index,
             float* value) override;
  void assign_slots(int64_t groups, int items, int k, int experts, int capacity,
                    bool batch_priority, const int32_t* expert, const float* gate,
                    const float* item_mask, int mask_every, int32_t* slot) override;
  void moe_buffer_rows(int64_t groups, int items, int k, int experts, int capacity,
                       int item_rows, const int32_t* expert, const int32_t* slot,
                       int32_t* row) override;
  bool skips_empty_slots() const override { return skip_empty_slots_; }
  // Off: expert buffers keep the fixed layout, as on a GPU (tests, benchmarks).
  void set_skip_empty_slots(bool on) { skip_empty_slots_ = on; }
  void moe_packed_buffer_rows(int64_t groups, int items, int k, int experts, int parts,
                              int capacity, int item_rows, const int32_t* expert,
                              const int32_t* slot, int32_t* row, int32_t* live) override;
  void moe_dispatch(int64_t items, int k, int item_rows, int dim, const float* x,
                    const int32_t* row, float* buf, uint16_t* buf16) override;
  void moe_combine(int64_t items, int k, int item_rows, int dim, const float* buf,
                   const int32_t* row, const float* gate, float* y) override;
  void moe_combine_backward(int64_t items, int k, int item_rows, int dim, const float* dy,
                            const float* buf, const int32_t* row, const float* gate, float* dbuf,
                            float* dgate, uint16_t* dbuf16) override;
  void moe_dispatch_backward(int64_t items, int k, int item_rows, int dim, const float* dbuf,
                             const int32_t* row, float* dx) override;
  void transpose_blocks(int64_t outer, int64_t inner, int64_t block, const float* src,
                        float* dst) override;
  void transpose_blocks(int64_t outer, int64_t inner, int64_t block, const uint16_t* src,
                        uint16_t* dst) override;
  void top_k_backward(int64_t rows, int cols, int k, const int32_t* index, const float* dvalue,
                      float* d) override;
  void router_aux_losses(const RouterAuxArgs& args) override;
  void count_assignments(int64_t items, int k, int experts, const int32_t* expert,
                         const int32_t* slot, const float* item_mask, int mask_every,
                         int64_t* counts) override;

 protected:
  void to_bf16_impl(int64_t n, const float* x, uint16_t* y) override;
  void gemm_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a, int lda,
                 GemmInput b, int ldb, float beta, float* c, int ldc) override;
  void gemm_batched_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a, int lda,
                         GemmInput b, int ldb, float beta, float* c, int ldc, BatchLevel outer,
                         BatchLevel inner) override;
  void gemm_batched_to_bf16_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a,
                                 int lda, GemmInput b, int ldb, uint16_t* c16, int ldc,
                                 BatchLevel outer, BatchLevel inner) override;
  void copy_to_device_impl(void* dst, const void* src, size_t bytes) override;
  void copy_to_host_impl(void* dst, const void* src, size_t bytes) override;
  void upload_pixels_impl(int64_t n, const uint8_t* host, float* dst) override;

 private:
  CachingAllocator allocator_;
  std::function<void()> captured_;
  std::vector<GemmShape>* gemm_log_ = nullptr;
  bool time_gemms_ = false;
  bool skip_empty_slots_ = true;
  std::vector<float> combine_scratch_;  // moe_combine_backward without dbuf
};

}  // namespace vmoe
