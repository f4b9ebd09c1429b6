#include "core/cpu/cpu_backend.h"

#include <sys/mman.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/cpu/bf16_outputs.h"
#include "core/cpu/cpu_loops.h"
#include "core/math.h"

namespace vmoe {

using cpu_bf16::bf16_rows;
using cpu_bf16::by_rows;
using cpu_bf16::write_bf16;

// ---- memory ------------------------------------------------------------------

namespace {

// 64-byte alignment: whole cache lines and aligned AVX-512 loads (the
// allocator's sizes are multiples of 512). Blocks of 2 MiB and more start on
// a 2 MiB boundary and ask for transparent huge pages: the GEMMs' packing
// reads activations with strides of whole rows, and 4 KiB pages then cost a
// TLB miss every few rows (+1.7% images/s on the default V-MoE, Zen 4). The
// kernel's setting rules: nothing changes where THP is "never".
void* host_malloc(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  if (bytes < kHugePage) return std::aligned_alloc(64, bytes);
  void* p = std::aligned_alloc(kHugePage, bytes);
  if (p != nullptr) madvise(p, bytes, MADV_HUGEPAGE);  // advice: failure is harmless
  return p;
}
void host_free(void* ptr) {
  std::free(ptr);
}

}  // namespace

CpuBackend::CpuBackend() : allocator_(SystemMemory{host_malloc, host_free, "host"}) {}

void* CpuBackend::allocate(size_t bytes) {
  return allocator_.allocate(bytes);
}
void CpuBackend::deallocate(void* ptr) {
  allocator_.deallocate(ptr);
}
// The stand-in for a CUDA graph: the allocator keeps the blocks the captured
// run used exactly as on a GPU (so the tests see a capture invalidated when
// a GPU's would be), and a replay calls the closure again.
bool CpuBackend::capture(const std::function<void()>& body) {
  drop_capture();
  allocator_.begin_capture();
  try {
    body();
  } catch (...) {
    allocator_.end_capture();
    allocator_.release_capture();
    throw;
  }
  allocator_.end_capture();
  captured_ = body;
  return true;
}
void CpuBackend::replay() {
  VMOE_CHECK(capture_valid(), "replay without a valid capture");
  captured_();
}
bool CpuBackend::capture_valid() const {
  return captured_ != nullptr && !allocator_.capture_invalidated();
}
void CpuBackend::drop_capture() {
  if (captured_ == nullptr) return;
  captured_ = nullptr;
  allocator_.release_capture();
}

void CpuBackend::copy_to_device_impl(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::copy_to_host_impl(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}
void CpuBackend::upload_pixels_impl(int64_t n, const uint8_t* host, float* dst) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = scale_pixel(host[i]);
}

void CpuBackend::zero(void* x, size_t bytes) {
  if (bytes) std::memset(x, 0, bytes);
}

// ---- element-wise --------------------------------------------------------------

void CpuBackend::fill(float* x, int64_t n, float value) { std::fill(x, x + n, value); }

void CpuBackend::scale(float* x, int64_t n, float alpha) {
  cpu_loops::scale(x, n, alpha);
}

void CpuBackend::axpy(int64_t n, float alpha, const float* x, float* y) {
  cpu_loops::axpy(n, alpha, x, y);
}

void CpuBackend::add_bias(int64_t rows, int cols, const float* bias, float* y, uint16_t* y16) {
  cpu_loops::add_bias(rows, cols, bias, y);
  write_bf16(rows * cols, y, y16);
}

void CpuBackend::bias_grad(int64_t rows, int cols, const float* dy, float* dbias) {
  cpu_loops::bias_grad(rows, cols, dy, dbias);
}

void CpuBackend::expert_add_bias(int experts, int64_t rows, int cols, const float* bias, float* y) {
  for (int e = 0; e < experts; ++e)
    cpu_loops::add_bias(rows, cols, bias + e * cols, y + e * rows * cols);
}

void CpuBackend::expert_bias_gelu(int experts, int64_t rows, int cols, const float* bias, float* a,
                                  const uint16_t* a16, float* g, uint16_t* g16, uint16_t* slope16) {
  if (slope16 != nullptr) {  // a only read: each row's slope through a buffer into its copy
    thread_local std::vector<float> slope;
    slope.resize(static_cast<size_t>(cols));
    by_rows(experts * rows, cols, g, g16, [&](int64_t r, float* out) {
      if (a16 != nullptr)
        from_bf16(cols, a16 + r * cols, slope.data());
      else
        std::copy_n(a + r * cols, cols, slope.data());
      cpu_loops::bias_gelu(1, cols, bias + r / rows * cols, slope.data(), out);
      write_bf16(cols, slope.data(), slope16 + r * cols);
    });
    return;
  }
  if (g == nullptr) {
    bf16_rows(experts * rows, cols, g16, [&](int64_t r, float* out) {
      cpu_loops::bias_gelu(1, cols, bias + r / rows * cols, a + r * cols, out);
    });
    return;
  }
  for (int e = 0; e < experts; ++e) {
    const int64_t at = e * rows * cols;
    cpu_loops::bias_gelu(rows, cols, bias + e * cols, a + at, g + at);
  }
  write_bf16(experts * rows * cols, g, g16);
}

void CpuBackend::expert_bias_grad(int experts, int64_t rows, int cols, const float* dy,
                                  float* dbias) {
  for (int e = 0; e < experts; ++e)
    cpu_loops::bias_grad(rows, cols, dy + e * rows * cols, dbias + e * cols);
}

// Row by row: each row of da is added to the bias gradient while in cache,
// in row order, as bias_grad over the finished da would (the same bits);
// with da null (bf16 only) each row goes through a buffer.
void CpuBackend::gelu_backward(int experts, int64_t rows, int cols, const float* a,
                               const uint16_t* slope16, const float* dg, const uint16_t* dg16,
                               float* da, uint16_t* da16, float* dbias) {
  thread_local std::vector<float> slope, grad;  // rows of slope16 and dg16, widened
  if (slope16 != nullptr) slope.resize(static_cast<size_t>(cols));
  if (dg16 != nullptr) grad.resize(static_cast<size_t>(cols));
  // by_rows writes da16's row after the row op (or all of it after every
  // row, da given): dg16 may be da16.
  by_rows(experts * rows, cols, da, da16, [&](int64_t r, float* out) {
    if (slope16 != nullptr) from_bf16(cols, slope16 + r * cols, slope.data());
    if (dg16 != nullptr) from_bf16(cols, dg16 + r * cols, grad.data());
    const float* s = slope16 != nullptr ? slope.data() : a + r * cols;
    const float* g = dg16 != nullptr ? grad.data() : dg + r * cols;
    cpu_loops::gelu_backward(cols, s, g, out);
    if (dbias != nullptr) cpu_loops::bias_grad(1, cols, out, dbias + r / rows * cols);
  });
}

void CpuBackend::tanh_forward(int64_t n, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = tanhf(x[i]);
}

void CpuBackend::tanh_backward(int64_t n, const float* y, float* dy) {
  cpu_loops::tanh_backward(n, y, dy);
}

// ---- normalisation and softmax ------------------------------------------------------

void CpuBackend::layernorm_forward(int64_t rows, int cols, float eps, const float* x,
                                   const float* gamma, const float* beta, float* y, uint16_t* y16,
                                   float* mean, float* rstd) {
  add_layernorm_forward(rows, cols, eps, nullptr, const_cast<float*>(x), gamma, beta, y, y16, mean,
                        rstd);
}

void CpuBackend::add_layernorm_forward(int64_t rows, int cols, float eps, const float* residual,
                                       float* x, const float* gamma, const float* beta, float* y,
                                       uint16_t* y16, float* mean, float* rstd) {
  const auto norm = [&](int64_t n, int64_t at, float* out) {
    if (residual != nullptr)
      cpu_loops::add_layernorm_forward(n, cols, eps, residual + at, x + at, gamma, beta, out,
                                       mean + at / cols, rstd + at / cols);
    else
      cpu_loops::layernorm_forward(n, cols, eps, x + at, gamma, beta, out, mean + at / cols,
                                   rstd + at / cols);
  };
  if (y != nullptr) {
    norm(rows, 0, y);
    write_bf16(rows * cols, y, y16);
    return;
  }
  bf16_rows(rows, cols, y16, [&](int64_t r, float* out) { norm(1, r * cols, out); });
}

void CpuBackend::layernorm_backward(int64_t rows, int cols, const float* x, const float* gamma,
                                    const float* mean, const float* rstd, const float* dy,
                                    float* dx, uint16_t* dx16, float* dgamma, float* dbeta) {
  cpu_loops::layernorm_backward(rows, cols, x, gamma, mean, rstd, dy, dx, dgamma, dbeta);
  write_bf16(rows * cols, dx, dx16);
}

void CpuBackend::softmax_forward(int64_t rows, int cols, int ld, float scale, float* x, float* p,
                                 uint16_t* p16) {
  if (p == x) {
    cpu_loops::softmax_forward(rows, cols, ld, scale, x);
    write_bf16(rows * ld, x, p16);  // the gaps are zeros
    return;
  }
  by_rows(rows, ld, p, p16, [&](int64_t r, float* out) {
    std::copy(x + r * ld, x + r * ld + cols, out);
    cpu_loops::softmax_forward(1, cols, ld, scale, out);
  });
}

void CpuBackend::softmax_backward(int64_t rows, int cols, int ld, float scale, const float* p,
                                  const uint16_t* p16, const float* dp, float* d, uint16_t* d16) {
  if (d != nullptr && p16 == nullptr) {
    if (d != dp) std::copy(dp, dp + rows * ld, d);
    cpu_loops::softmax_backward(rows, cols, ld, scale, p, d);
    write_bf16(rows * ld, d, d16);
    return;
  }
  // Row by row: d's row (or, d null, a buffer) gets dp's, and p's row is
  // widened from p16 where that is given.
  thread_local std::vector<float> widened;
  if (p16 != nullptr) widened.resize(static_cast<size_t>(ld));
  by_rows(rows, ld, d, d16, [&](int64_t r, float* out) {
    if (out != dp + r * ld) std::copy(dp + r * ld, dp + r * ld + cols, out);
    if (p16 != nullptr) from_bf16(ld, p16 + r * ld, widened.data());
    const float* pr = p16 != nullptr ? widened.data() : p + r * ld;
    cpu_loops::softmax_backward(1, cols, ld, scale, pr, out);
  });
}

// ---- ViT embedding and pooling ------------------------------------------------------

void CpuBackend::patchify(int64_t batch, int height, int width, int channels, int patch,
                          const float* images, float* patches) {
  const int gh = height / patch, gw = width / patch;
  const int64_t row_len = static_cast<int64_t>(patch) * channels;  // one patch row, contiguous
  for (int64_t b = 0; b < batch; ++b) {
    const float* img = images + b * height * width * channels;
    for (int py = 0; py < gh; ++py) {
      for (int px = 0; px < gw; ++px) {
        float* out = patches + ((b * gh + py) * gw + px) * patch * row_len;
        for (int y = 0; y < patch; ++y) {
          const float* src = img + ((py * patch + y) * width + px * patch) * channels;
          std::memcpy(out + y * row_len, src, static_cast<size_t>(row_len) * sizeof(float));
        }
      }
    }
  }
}

void CpuBackend::embed_tokens(int64_t batch, int patches, int dim, const float* proj,
                              const float* bias, const float* cls, const float* pos,
                              float* tokens) {
  cpu_loops::embed_tokens(batch, patches, dim, proj, bias, cls, pos, tokens);
}

void CpuBackend::embed_tokens_backward(int64_t batch, int patches, int dim, const float* dtokens,
                                       float* dproj, float* dbias, float* dcls, float* dpos) {
  cpu_loops::embed_tokens_backward(batch, patches, dim, dtokens, dproj, dbias, dcls, dpos);
}

void CpuBackend::pool_rows(int64_t batch, int tokens, int dim, bool mean, const float* x,
                           float* out) {
  cpu_loops::pool_rows(batch, tokens, dim, mean, x, out);
}

void CpuBackend::pool_rows_backward(int64_t batch, int tokens, int dim, bool mean,
                                    const float* dout, float* dx) {
  cpu_loops::pool_rows_backward(batch, tokens, dim, mean, dout, dx);
}

// ---- attention heads ----------------------------------------------------------------

void CpuBackend::pack_heads(int64_t images, int tokens, int padded, int heads, int head_dim,
                            int slabs, const float* x, const float* bias, float* y, uint16_t* y16) {
  const HeadsLayout l{images, tokens, padded, heads, head_dim, slabs};
  // A "row" here is a packed head [padded, hd].
  by_rows(l.count(), padded * head_dim, y, y16, [&](int64_t sbh, float* dst) {
    const float* src = x + l.row_major_base(sbh);
    const float* b = bias != nullptr ? bias + l.column_base(sbh) : nullptr;
    for (int t = 0; t < tokens; ++t) {
      const float* row = src + t * l.width();
      float* out = dst + t * head_dim;
      if (b == nullptr) {
        std::copy(row, row + head_dim, out);
      } else {
        for (int c = 0; c < head_dim; ++c) out[c] = row[c] + b[c];
      }
    }
    std::fill(dst + int64_t{tokens} * head_dim, dst + int64_t{padded} * head_dim, 0.0f);
  });
}

// Row by row (each row gathered from its heads), so the bias gradient adds
// the rows in order, as bias_grad over the finished x would (the same bits).
void CpuBackend::unpack_heads(int64_t images, int tokens, int padded, int heads, int head_dim,
                              int slabs, const float* y, float* x, uint16_t* x16, float* dbias) {
  const HeadsLayout l{images, tokens, padded, heads, head_dim, slabs};
  const int width = static_cast<int>(l.width());
  const int64_t groups = int64_t{slabs} * heads;
  by_rows(images * tokens, width, x, x16, [&](int64_t r, float* row) {
    const int64_t b = r / tokens, t = r % tokens;
    for (int64_t g = 0; g < groups; ++g) {  // g = s H + h: head sbh = (s images + b) H + h
      const int64_t sbh = (g / heads * images + b) * heads + g % heads;
      const float* src = y + (sbh * padded + t) * head_dim;
      std::copy(src, src + head_dim, row + g * head_dim);
    }
    if (dbias != nullptr) cpu_loops::bias_grad(1, width, row, dbias);
  });
}

// ---- losses ------------------------------------------------------------------------

void CpuBackend::softmax_cross_entropy(int64_t rows, int classes, const float* logits,
                                       const int32_t* labels, const float* weight,
                                       float grad_scale, float* loss, float* dlogits) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* z = logits + r * classes;
    float* dz = dlogits + r * classes;
    const float w = weight[r];
    float mx = -INFINITY;
    for (int c = 0; c < classes; ++c) mx = std::max(mx, z[c]);
    float sum = 0.0f;
    for (int c = 0; c < classes; ++c) sum += exp_fast(z[c] - mx);
    const float lse = mx + std::log(sum);
    loss[r] = w * (lse - z[labels[r]]);
    const float g = grad_scale * w;
    for (int c = 0; c < classes; ++c) dz[c] = g * exp_fast(z[c] - lse);
    dz[labels[r]] -= g;
  }
}

void CpuBackend::sigmoid_cross_entropy(int64_t rows, int classes, const float* logits,
                                       const float* targets, const float* weight,
                                       float grad_scale, float* loss, float* dlogits) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* z = logits + r * classes;
    const float* y = targets + r * classes;
    float* dz = dlogits + r * classes;
    const float w = weight[r];
    float sum = 0.0f;
    for (int c = 0; c < classes; ++c) {
      // -y log s(z) - (1-y) log(1-s(z)) = softplus(z) - y z
      sum += softplus(z[c]) - y[c] * z[c];
      dz[c] = grad_scale * w * (sigmoid(z[c]) - y[c]);
    }
    loss[r] = w * sum;
  }
}

// ---- optimisers and reductions --------------------------------------------------------

void CpuBackend::begin_update(const LrSchedule& schedule, float beta1, float beta2,
                              const float* grad_scale, int64_t* step, UpdateScalars* s) {
  *s = update_scalars(schedule.at(*step), beta1, beta2, *step + 1,
                      grad_scale != nullptr ? *grad_scale : 1.0f);
  ++*step;
}

void CpuBackend::adam_update(int64_t n, float beta1, float beta2, float eps, float weight_decay,
                             const UpdateScalars* s, const float* grad, float* param,
                             uint16_t* param16, float* m, float* v) {
  cpu_loops::adam_update(n, adam_params(*s, beta1, beta2, eps, weight_decay), grad, param, m, v);
  write_bf16(n, param, param16);
}

void CpuBackend::sgd_update(int64_t n, float momentum, float weight_decay, const UpdateScalars* s,
                            const float* grad, float* param, uint16_t* param16, float* buf) {
  cpu_loops::sgd_update(n, SgdParams{s->lr, momentum, weight_decay, s->grad_scale}, grad, param,
                        buf);
  write_bf16(n, param, param16);
}

void CpuBackend::sum_squares(int64_t n, const float* x, double* out) {
  cpu_loops::sum_squares(n, x, out);
}

void CpuBackend::clip_scale(const double* sq, double expert_divisor, float max_norm, double* norm,
                            float* scale) {
  *scale = clip_factor(sq[0], sq[1], expert_divisor, max_norm, *norm);
}

void CpuBackend::mix_pairs(int64_t pairs, int64_t n, float lambda, float* x) {
  cpu_loops::mix_pairs(pairs, n, lambda, x);
}

void CpuBackend::accumulate_columns(int64_t rows, int cols, const float* x, double scale,
                                    double* acc) {
  for (int c = 0; c < cols; ++c) {
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r) sum += x[r * cols + c];
    acc[c] += scale * sum;
  }
}

void CpuBackend::count_top1_hits(int64_t rows, int cols, const float* x, const int32_t* label,
                                 const float* mask, int64_t* hits) {
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (mask != nullptr && mask[r] == 0.0f) continue;
    const float* z = x + r * cols;
    int best = 0;
    for (int c = 1; c < cols; ++c) best = z[c] > z[best] ? c : best;
    n += best == label[r];
  }
  *hits += n;
}

}  // namespace vmoe
