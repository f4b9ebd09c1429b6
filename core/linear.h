// A dense layer y = x W + b with W stored [in, out] (Flax's kernel layout,
// which is also the checkpoint layout).
#pragma once

#include <string>

#include "core/backend.h"
#include "core/param_store.h"

namespace vmoe {

struct LinearInit {
  Init kernel = Init::kXavierUniform;
  int64_t fan_out = 0;  // xavier fan_out if not `out` (e.g. fused q|k|v: each part is D x D)
  bool bias = true;
  Init bias_init = Init::kZeros;
  float bias_value = 0.0f;
};

class Linear {
 public:
  Linear() = default;
  Linear(ParamStore& store, const std::string& name, int in, int out, LinearInit init = {});

  int in() const { return in_; }
  int out() const { return out_; }
  ParamId kernel() const { return kernel_; }

  // y[rows, out] = x[rows, in] W + b; y16 (nullable) = bfloat16(y) for a GEMM
  // that reads y next. The weights come from the store's bf16 copy where it
  // has one (GemmInput).
  void forward(Backend& be, GemmInput x, int64_t rows, float* y, uint16_t* y16 = nullptr) const;
  // y = x W only, for callers that fuse the bias into the next op; with y16
  // given (under bf16) written as bfloat16 there instead (y null).
  void matmul(Backend& be, GemmInput x, int64_t rows, float* y, uint16_t* y16 = nullptr) const;
  const float* bias_value() const { return store_->value(bias_); }
  float* bias_grad() const { return store_->grad(bias_); }
  // dW += x^T dy; db += sum dy; dx = dy W^T (or += when accumulate_dx). dx may
  // be null. Pass dy's bf16 copy (Workspace::shared_input) where there is one:
  // both GEMMs read it.
  void backward(Backend& be, GemmInput x, GemmInput dy, int64_t rows, float* dx,
                bool accumulate_dx = false) const;
  // backward with dx written as bf16 alone (under bf16: fc2's, which only the
  // GELU's backward reads, into a bf16 gradient).
  void backward_to_bf16(Backend& be, GemmInput x, GemmInput dy, int64_t rows, uint16_t* dx16) const;
  // backward without db, for callers that took it in the op that made dy
  // (matmul's dual); dy may be its bf16 copy alone.
  void matmul_backward(Backend& be, GemmInput x, GemmInput dy, int64_t rows, float* dx,
                       bool accumulate_dx = false) const;

 private:
  ParamStore* store_ = nullptr;
  int in_ = 0, out_ = 0;
  ParamId kernel_ = -1, bias_ = -1;
};

// LayerNorm over the last dimension with learned scale (ones) and bias (zeros).
class LayerNorm {
 public:
  LayerNorm() = default;
  LayerNorm(ParamStore& store, const std::string& name, int dim, float eps = 1e-6f);

  // y = LN(x); saves mean and rstd [rows] for backward; y16 (nullable) =
  // bfloat16(y) for the GEMM that reads y.
  void forward(Backend& be, const float* x, int64_t rows, float* y, float* mean, float* rstd,
               uint16_t* y16 = nullptr) const;
  // x += residual, then forward(x): the residual add fused into the norm.
  void add_forward(Backend& be, const float* residual, float* x, int64_t rows, float* y,
                   float* mean, float* rstd, uint16_t* y16 = nullptr) const;
  // dx += dL/dx; parameter gradients accumulate; dx16 (nullable) =
  // bfloat16(dx) after the update.
  void backward(Backend& be, const float* x, const float* mean, const float* rstd, const float* dy,
                int64_t rows, float* dx, uint16_t* dx16 = nullptr) const;

 private:
  ParamStore* store_ = nullptr;
  int dim_ = 0;
  float eps_ = 1e-6f;
  ParamId scale_ = -1, bias_ = -1;
};

}  // namespace vmoe
