// The CUDA backend: every op of the Backend interface on one GPU. Matrix
// products go through cuBLAS (strided-batched for attention heads);
// element-wise, normalisation, loss, optimiser and routing kernels are built
// from the same __host__ __device__ bodies as the CPU backend (core/math.h),
// so the CPU tests exercise their arithmetic. All work is queued on the
// backend's stream; copies to the host synchronise it. Memory comes from a
// caching allocator: no cudaMalloc in the step loop once warm.
//
// Files: cuda_backend.cpp (memory, copies, GEMMs), cuda_bf16.cu (mixed
// precision), cuda_ops.cu (dense ops, losses, optimisers), cuda_router.cu
// (noise, top-k, slots, auxiliary losses), cuda_moe.cu (expert buffers).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/caching_allocator.h"

namespace vmoe {

// Devices visible to this process (0 when there is no driver or device).
int cuda_device_count();

class CudaBackend final : public Backend {
 public:
  // Runs on `device` (see comm/device.h for choosing it from the local rank).
  explicit CudaBackend(int device = 0);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  bool set_tf32(bool on) override;
  int64_t device_memory_free() override;
  void* allocate_host(size_t bytes) override;  // pinned (cudaHostAlloc, portable)
  void deallocate_host(void* ptr) override;
  int time_mark() override;
  double seconds_between(int from, int to) override;
  void clear_time_marks() override;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  const CachingAllocator& allocator() const { return allocator_; }

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

  // Mixture of experts (cuda_router.cu, cuda_moe.cu).
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
  // One strided-batched call per matrix of the smaller level, batching the
  // larger one (e.g. per head over the images, or per image over its heads).
  static std::pair<BatchLevel, BatchLevel> loop_and_batch(BatchLevel outer, BatchLevel inner) {
    if (inner.count >= outer.count) return {outer, inner};
    return {inner, outer};
  }
  void copy_to_device_impl(void* dst, const void* src, size_t bytes) override;
  void copy_to_host_impl(void* dst, const void* src, size_t bytes) override;
  void upload_pixels_impl(int64_t n, const uint8_t* host, float* dst) override;
  void synchronize_impl() override;
  void to_bf16_impl(int64_t n, const float* x, uint16_t* y) override;
  void gemm_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a, int lda,
                 GemmInput b, int ldb, float beta, float* c, int ldc) override;
  void gemm_batched_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a, int lda,
                         GemmInput b, int ldb, float beta, float* c, int ldc, BatchLevel outer,
                         BatchLevel inner) override;
  void gemm_batched_to_bf16_impl(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a,
                                 int lda, GemmInput b, int ldb, uint16_t* c16, int ldc,
                                 BatchLevel outer, BatchLevel inner) override;

 private:
  // Host waits for the GPU, marked for the WaitObserver: where a stuck NCCL
  // collective (a peer that never arrives) shows.
  void wait_for(cudaStream_t stream) const;
  void wait_for(cudaEvent_t event) const;
  // gemm_batched with bfloat16 inputs (cuda_bf16.cu): A and B are converted
  // once per call, every matrix of both levels, then multiplied level by
  // level; C is fp32 or (c_type CUDA_R_16BF) bfloat16.
  void gemm_bf16(Trans ta, Trans tb, int m, int n, int k, float alpha, GemmInput a, int lda,
                 GemmInput b, int ldb, float beta, void* c, cudaDataType_t c_type, int ldc,
                 BatchLevel outer, BatchLevel inner);
  // y[e, r, :] += bias[e, :] over expert-major rows; y16 (nullable) = bf16(y).
  void add_bias_per_expert(int experts, int64_t rows, int cols, const float* bias, float* y,
                           uint16_t* y16);
  // Scratch device memory of at least `bytes`, reused across calls (reductions).
  void* scratch(size_t bytes);

  int device_ = 0;
  std::vector<cudaEvent_t> marks_;  // time marks, reused after clear_time_marks()
  // upload_pixels: a copy stream and two device staging buffers used in turn;
  // copied[k] follows a copy into slot k, consumed[k] the scaling that reads it.
  cudaStream_t copy_stream_ = nullptr;
  uint8_t* staging_[2] = {nullptr, nullptr};
  size_t staging_bytes_[2] = {0, 0};
  cudaEvent_t copied_[2] = {nullptr, nullptr}, consumed_[2] = {nullptr, nullptr};
  int next_staging_ = 0;
  size_t marks_used_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  CachingAllocator allocator_;
  cudaGraphExec_t graph_ = nullptr;  // the captured step (capture())
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace vmoe
