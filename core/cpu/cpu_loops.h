// The CPU backend's element-wise and row-wise loops as free functions, so
// that each can be cloned per instruction set (core/cpu/cpu_isa.h): virtual
// functions cannot be. CpuBackend's methods of the same names forward here;
// the arguments are theirs (core/backend.h documents them).
//
// Every result is the same bit for bit whichever copy runs: element-wise
// bodies fuse a*b+c only where fmaf is written (-ffp-contract=off), and sums
// go through 16 fixed lanes joined in a fixed order, not through the
// compiler's reductions, whose order follows the vector width.
#pragma once

#include <cstdint>

#include "core/backend.h"

namespace vmoe::cpu_loops {

void scale(float* x, int64_t n, float alpha);
void axpy(int64_t n, float alpha, const float* x, float* y);
void add_bias(int64_t rows, int cols, const float* bias, float* y);
void bias_grad(int64_t rows, int cols, const float* dy, float* dbias);
// g = gelu(a + bias), a = gelu'(a + bias) (kept for backward).
void bias_gelu(int64_t rows, int cols, const float* bias, float* a, float* g);
// da = dg * d, d = bias_gelu's derivative.
void gelu_backward(int64_t n, const float* d, const float* dg, float* da);
void tanh_backward(int64_t n, const float* y, float* dy);

void layernorm_forward(int64_t rows, int cols, float eps, const float* x, const float* gamma,
                       const float* beta, float* y, float* mean, float* rstd);
// x += residual, then layernorm_forward of x (one pass per row).
void add_layernorm_forward(int64_t rows, int cols, float eps, const float* residual, float* x,
                           const float* gamma, const float* beta, float* y, float* mean,
                           float* rstd);
void layernorm_backward(int64_t rows, int cols, const float* x, const float* gamma,
                        const float* mean, const float* rstd, const float* dy, float* dx,
                        float* dgamma, float* dbeta);
void softmax_forward(int64_t rows, int cols, int ld, float scale, float* x);
void softmax_backward(int64_t rows, int cols, int ld, float scale, const float* p, float* d);

void embed_tokens(int64_t batch, int patches, int dim, const float* proj, const float* bias,
                  const float* cls, const float* pos, float* tokens);
void embed_tokens_backward(int64_t batch, int patches, int dim, const float* dtokens, float* dproj,
                           float* dbias, float* dcls, float* dpos);
void pool_rows(int64_t batch, int tokens, int dim, bool mean, const float* x, float* out);
void pool_rows_backward(int64_t batch, int tokens, int dim, bool mean, const float* dout,
                        float* dx);

void adam_update(int64_t n, const AdamParams& a, const float* grad, float* param, float* m,
                 float* v);
void sgd_update(int64_t n, const SgdParams& s, const float* grad, float* param, float* buf);
void sum_squares(int64_t n, const float* x, double* out);
// The first two words of Philox4x32-10 at counters first .. first + n - 1
// (core/random.h), 8 or 16 lanes at a time (core/cpu/philox_lanes.cpp).
void philox_words(int64_t n, uint64_t key, uint64_t stream, uint64_t first, uint32_t* w0,
                  uint32_t* w1);
void mix_pairs(int64_t pairs, int64_t n, float lambda, float* x);

void moe_combine(int64_t items, int k, int item_rows, int dim, const float* buf, const int32_t* row,
                 const float* gate, float* y);
void moe_combine_backward(int64_t items, int k, int item_rows, int dim, const float* dy,
                          const float* buf, const int32_t* row, const float* gate, float* dbuf,
                          float* dgate);
void moe_dispatch_backward(int64_t items, int k, int item_rows, int dim, const float* dbuf,
                           const int32_t* row, float* dx);

void router_aux_losses(const RouterAuxArgs& a);

}  // namespace vmoe::cpu_loops
