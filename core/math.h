// Scalar arithmetic shared by the CPU and CUDA backends (__host__ __device__).
//
// exp and the normal CDF are written out branch-free so the CPU loops
// vectorise (glibc's scalar expf/erff would dominate GELU and softmax) and so
// both backends compute bit-comparable values. Accuracy: exp_fast < 2 ulp
// over its range; normal_cdf's tail relative error < 4e-7 + 1e-7 x^2.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/hd.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#endif

namespace vmoe {

VMOE_HD float bits_to_float(int32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

VMOE_HD uint32_t float_to_bits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

// bfloat16 (the top 16 bits of a float) by round-to-nearest-even, as
// cuBLAS and __float2bfloat16_rn round; NaN becomes the quiet NaN 0x7fff. On
// the GPU that is one cvt instruction (the packs convert two at a time), and
// the CPU's integer form gives the same bits for every input.
VMOE_HD uint16_t to_bf16(float f) {
#if defined(__CUDA_ARCH__)
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0u) return 0x7fffu;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#endif
}
VMOE_HD float from_bf16(uint16_t b) {
  return bits_to_float(static_cast<int32_t>(static_cast<uint32_t>(b) << 16));
}
VMOE_HD float round_to_bf16(float f) { return from_bf16(to_bf16(f)); }

// c ? a : b, by bit masks after both are computed. A plain ?: lets GCC move
// arithmetic into its arms; under -ftrapping-math (the default) it then will
// not if-convert that work, and without AVX-512's masks the loop stays scalar.
VMOE_HD float select(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return bits_to_float(static_cast<int32_t>((float_to_bits(a) & m) | (float_to_bits(b) & ~m)));
}

// e^x for x in [-87.3, 0], x clamped below: exp_fast without its upper clamp
// (the same bits for every x <= 0), for arguments that cannot be positive:
// softmax's shifted scores, the normal density's -x^2 / 2.
VMOE_HD float exp_nonpositive(float x) {
  x = select(x < -87.3f, -87.3f, x);
  // n = round(x / ln 2) by the 1.5*2^23 trick (vectorises, no libm call).
  const float shifter = 12582912.0f;
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = fmaf(n, -0.693145751953125f, x);  // Cody-Waite split of ln 2
  r = fmaf(n, -1.428606765330187045e-06f, r);
  float p = 1.9875691500e-4f;
  p = fmaf(p, r, 1.3981999507e-3f);
  p = fmaf(p, r, 8.3334519073e-3f);
  p = fmaf(p, r, 4.1665795894e-2f);
  p = fmaf(p, r, 1.6666665459e-1f);
  p = fmaf(p, r, 5.0000001201e-1f);
  p = fmaf(p, r * r, r) + 1.0f;
  return p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

// e^x for x in [-87.3, 88.3] (clamped outside: 0 and inf are never produced).
VMOE_HD float exp_fast(float x) {
  return exp_nonpositive(select(x > 88.3f, 88.3f, x));
}

// Standard normal CDF given e = exp(-x^2 / 2), so that GELU's gradient shares
// the exp with the density. With z = |x| / sqrt 2 and t = 1 / (1 + z / 2),
// erfc(z) = t e^(-z^2) R(t), R a degree-8 polynomial fitted (relative
// weights, near-minimax) to erfc(z) e^(z^2) / t over z in [0, 10]: relative
// error < 2e-7 in float. Past z = 10, erfc < 2e-45 and e is clamped.
VMOE_HD float normal_cdf_given(float x, float e) {
  const float z = 0.70710678118654752f * fabsf(x);
  const float t = 1.0f / fmaf(0.5f, z, 1.0f);
  float r = -0.05907857f;
  r = fmaf(r, t, 0.28462014f);
  r = fmaf(r, t, -0.48728949f);
  r = fmaf(r, t, 0.27816474f);
  r = fmaf(r, t, -0.02668925f);
  r = fmaf(r, t, 0.20271212f);
  r = fmaf(r, t, 0.24309783f);
  r = fmaf(r, t, 0.28237605f);
  r = fmaf(r, t, 0.28208637f);
  const float tail = 0.5f * (t * e * r);  // Phi(-|x|) = erfc(z) / 2
  return select(x >= 0.0f, 1.0f - tail, tail);
}

// Standard normal CDF (GELU, the load-balancing loss). Relative error of the
// tail < 4e-7 + 1e-7 x^2, the x^2 term from rounding -x^2 / 2.
VMOE_HD float normal_cdf(float x) {
  return normal_cdf_given(x, exp_nonpositive(-0.5f * x * x));
}

// Exact (erf-based) GELU: x * Phi(x).
VMOE_HD float gelu(float x) {
  return x * normal_cdf(x);
}

// d gelu / dx = Phi(x) + x phi(x), one exp for both.
VMOE_HD float gelu_grad(float x) {
  const float e = exp_nonpositive(-0.5f * x * x);
  return fmaf(x, 0.39894228040143268f * e, normal_cdf_given(x, e));
}

// Both at once, sharing the exp (the same bits as gelu(x) and gelu_grad(x)):
// the forward pass keeps the derivative, so backward is a multiply.
VMOE_HD void gelu_and_grad(float x, float& g, float& d) {
  const float e = exp_nonpositive(-0.5f * x * x);
  const float cdf = normal_cdf_given(x, e);
  g = x * cdf;
  d = fmaf(x, 0.39894228040143268f * e, cdf);
}

// d tanh(x) / dx from tanh's output y.
VMOE_HD float tanh_grad(float y) { return 1.0f - y * y; }

VMOE_HD float sigmoid(float x) { return 1.0f / (1.0f + exp_fast(-x)); }

// Numerically stable log(1 + e^x).
VMOE_HD float softplus(float x) {
  return select(x > 0.0f, x, 0.0f) + log1pf(exp_nonpositive(-fabsf(x)));
}

// One element of Adam with decoupled weight decay:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * (m / c1 / (sqrt(v / c2) + eps) + wd * p)
// with c1 = 1 - b1^t and c2 = 1 - b2^t computed once per step, and applied
// as the factors 1 / c1 and 1 / sqrt(c2) (adam_params): one division and one
// square root per element, the vector units' slowest instructions.
struct AdamParams {
  float lr, beta1, beta2, eps, weight_decay;
  float m_scale;            // 1 / c1
  float v_scale;            // 1 / sqrt(c2)
  float grad_scale = 1.0f;  // the clipping factor, applied as the gradient is read
};
// What changes from one optimiser step to the next: the learning rate and
// Adam's bias corrections. Computed and kept in device memory
// (Backend::begin_update), not passed from the host.
struct UpdateScalars {
  float lr, correction1, correction2;
  float grad_scale;  // gradients are multiplied by it as the update reads them (clipping)
};
// For update number `step` (1-based) at rate lr: corrections 1 - beta^step in double.
VMOE_HD UpdateScalars update_scalars(double lr, float beta1, float beta2, int64_t step,
                                     float grad_scale = 1.0f) {
  return {static_cast<float>(lr),
          static_cast<float>(1.0 - pow(static_cast<double>(beta1), static_cast<double>(step))),
          static_cast<float>(1.0 - pow(static_cast<double>(beta2), static_cast<double>(step))),
          grad_scale};
}
VMOE_HD AdamParams adam_params(const UpdateScalars& s, float beta1, float beta2, float eps,
                               float weight_decay) {
  return {s.lr,
          beta1,
          beta2,
          eps,
          weight_decay,
          1.0f / s.correction1,
          1.0f / sqrtf(s.correction2),
          s.grad_scale};
}
// The gradient scaled first, rounded as scaling it in place would: the same
// bits as clipping the gradients before the update.
VMOE_HD void adam_update(const AdamParams& a, float grad, float& param, float& m, float& v) {
  grad *= a.grad_scale;
  m = fmaf(a.beta1, m, (1.0f - a.beta1) * grad);
  v = fmaf(a.beta2, v, (1.0f - a.beta2) * grad * grad);
  const float step = (m * a.m_scale) / fmaf(sqrtf(v), a.v_scale, a.eps);
  param -= a.lr * fmaf(a.weight_decay, param, step);
}

// Attention heads packed head-major (Backend::pack_heads): x is [images T,
// slabs H hd] row-major; head sbh = (s images + b) H + h of the packed side
// is [padded, hd].
struct HeadsLayout {
  int64_t images;
  int tokens, padded, heads, head_dim, slabs;
  VMOE_HD int64_t count() const { return slabs * images * heads; }
  VMOE_HD int64_t width() const { return int64_t{slabs} * heads * head_dim; }  // a row of x
  // The column in a row of x of head sbh's channel 0.
  VMOE_HD int64_t column_base(int64_t sbh) const {
    return (sbh / (heads * images) * heads + sbh % heads) * head_dim;
  }
  // The offset in x of head sbh's token 0, channel 0.
  VMOE_HD int64_t row_major_base(int64_t sbh) const {
    return (sbh / heads) % images * tokens * width() + column_base(sbh);
  }
};

// A uint8 pixel in [-1, 1]: exactly x / 127.5 - 1 in float (the loader on the
// CPU, the device when images travel as uint8).
VMOE_HD float scale_pixel(uint8_t x) { return static_cast<float>(x) / 127.5f - 1.0f; }

// a*x + b*y with each product rounded, as the host computes it
// (-ffp-contract=off); nvcc would fuse one product into an FMA.
VMOE_HD float sum_of_products(float a, float x, float b, float y) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(__fmul_rn(a, x), __fmul_rn(b, y));
#else
  return a * x + b * y;
#endif
}

// Mixup of a pair of images, element by element: (a, b) <- (lambda a + (1 -
// lambda) b, lambda b + (1 - lambda) a), as datasets' mix_images; the same
// bits on both backends.
VMOE_HD void mix_pair(float lambda, float& a, float& b) {
  const float mu = 1.0f - lambda, x = a, y = b;
  a = sum_of_products(lambda, x, mu, y);
  b = sum_of_products(lambda, y, mu, x);
}

// Gradient clipping by the global norm: norm = sqrt(dense + expert / divisor)
// (expert sums of squares count each replicated expert once); the factor
// that brings it down to max_norm, or 1 (max_norm <= 0: no clipping).
VMOE_HD float clip_factor(double dense_sq, double expert_sq, double expert_divisor,
                          float max_norm, double& norm) {
  norm = sqrt(dense_sq + expert_sq / expert_divisor);
  return (max_norm > 0.0f && norm > max_norm) ? static_cast<float>(max_norm / norm) : 1.0f;
}

// One element of SGD with momentum (heavy ball) and decoupled weight decay:
//   buf = momentum * buf + g;  p -= lr * (buf + wd * p)
struct SgdParams {
  float lr, momentum, weight_decay;
  float grad_scale = 1.0f;  // as AdamParams::grad_scale
};
VMOE_HD void sgd_update(const SgdParams& s, float grad, float& param, float& buf) {
  grad *= s.grad_scale;
  buf = fmaf(s.momentum, buf, grad);
  param -= s.lr * fmaf(s.weight_decay, param, buf);
}

}  // namespace vmoe
