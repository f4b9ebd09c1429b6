// A scope computed in fp32 whatever the backend's precision: the router's
// logits, gates and losses stay fp32 under --precision=bf16, so that
// routing decisions do not move with bf16 rounding.
#pragma once

#include "core/backend.h"

namespace vmoe {

class Fp32Scope {
 public:
  explicit Fp32Scope(Backend& be) : be_(be), saved_(be.precision()) {
    be.set_precision(Precision::kFp32);
  }
  ~Fp32Scope() { be_.set_precision(saved_); }
  Fp32Scope(const Fp32Scope&) = delete;
  Fp32Scope& operator=(const Fp32Scope&) = delete;

 private:
  Backend& be_;
  Precision saved_;
};

}  // namespace vmoe
