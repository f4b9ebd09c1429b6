#include "core/linear.h"

namespace vmoe {

Linear::Linear(ParamStore& store, const std::string& name, int in, int out, LinearInit init)
    : store_(&store), in_(in), out_(out) {
  ParamSpec k;
  k.name = name + "/kernel";
  k.shape = {in, out};
  k.init = init.kernel;
  k.fan_in = in;
  k.fan_out = init.fan_out > 0 ? init.fan_out : out;
  k.weight_decay = true;
  kernel_ = store.add(k);
  if (init.bias) {
    ParamSpec b;
    b.name = name + "/bias";
    b.shape = {out};
    b.init = init.bias_init;
    b.init_value = init.bias_value;
    bias_ = store.add(b);
  }
}

void Linear::matmul(Backend& be, GemmInput x, int64_t rows, float* y, uint16_t* y16) const {
  if (y16 != nullptr) {
    be.gemm_batched_to_bf16(Trans::kNo, Trans::kNo, static_cast<int>(rows), out_, in_, 1.0f, x, in_,
                            store_->weight(kernel_), out_, y16, out_, {}, {});
    return;
  }
  be.gemm(Trans::kNo, Trans::kNo, static_cast<int>(rows), out_, in_, 1.0f, x, in_,
          store_->weight(kernel_), out_, 0.0f, y, out_);
}

void Linear::forward(Backend& be, GemmInput x, int64_t rows, float* y, uint16_t* y16) const {
  matmul(be, x, rows, y);
  if (bias_ >= 0) {
    be.add_bias(rows, out_, store_->value(bias_), y, y16);
  } else if (y16 != nullptr) {
    be.to_bf16(rows * out_, y, y16);
  }
}

void Linear::backward(Backend& be, GemmInput x, GemmInput dy, int64_t rows, float* dx,
                      bool accumulate_dx) const {
  if (bias_ >= 0) be.bias_grad(rows, out_, dy.f32, store_->grad(bias_));
  matmul_backward(be, x, dy, rows, dx, accumulate_dx);
}

void Linear::backward_to_bf16(Backend& be, GemmInput x, GemmInput dy, int64_t rows,
                              uint16_t* dx16) const {
  if (bias_ >= 0) be.bias_grad(rows, out_, dy.f32, store_->grad(bias_));
  matmul_backward(be, x, dy, rows, nullptr);  // the weight gradient
  be.gemm_batched_to_bf16(Trans::kNo, Trans::kYes, static_cast<int>(rows), in_, out_, 1.0f, dy,
                          out_, store_->weight(kernel_), out_, dx16, in_, {}, {});
}

void Linear::matmul_backward(Backend& be, GemmInput x, GemmInput dy, int64_t rows, float* dx,
                             bool accumulate_dx) const {
  be.gemm(Trans::kYes, Trans::kNo, in_, out_, static_cast<int>(rows), 1.0f, x, in_, dy, out_, 1.0f,
          store_->grad(kernel_), out_);
  if (dx != nullptr) {
    be.gemm(Trans::kNo, Trans::kYes, static_cast<int>(rows), in_, out_, 1.0f, dy, out_,
            store_->weight(kernel_), out_, accumulate_dx ? 1.0f : 0.0f, dx, in_);
  }
}

LayerNorm::LayerNorm(ParamStore& store, const std::string& name, int dim, float eps)
    : store_(&store), dim_(dim), eps_(eps) {
  scale_ = store.add({.name = name + "/scale", .shape = {dim}, .init = Init::kOnes});
  bias_ = store.add({.name = name + "/bias", .shape = {dim}, .init = Init::kZeros});
}

void LayerNorm::forward(Backend& be, const float* x, int64_t rows, float* y, float* mean,
                        float* rstd, uint16_t* y16) const {
  be.layernorm_forward(rows, dim_, eps_, x, store_->value(scale_), store_->value(bias_), y, y16,
                       mean, rstd);
}

void LayerNorm::add_forward(Backend& be, const float* residual, float* x, int64_t rows, float* y,
                            float* mean, float* rstd, uint16_t* y16) const {
  be.add_layernorm_forward(rows, dim_, eps_, residual, x, store_->value(scale_),
                           store_->value(bias_), y, y16, mean, rstd);
}

void LayerNorm::backward(Backend& be, const float* x, const float* mean, const float* rstd,
                         const float* dy, int64_t rows, float* dx, uint16_t* dx16) const {
  be.layernorm_backward(rows, dim_, x, store_->value(scale_), mean, rstd, dy, dx, dx16,
                        store_->grad(scale_), store_->grad(bias_));
}

}  // namespace vmoe
