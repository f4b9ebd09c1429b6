// One buffer for all parameters, with named views, and a twin buffer for the
// gradients. Optimiser moments use the same layout (make_like()).
//
// The buffer has two regions: dense parameters first (replicated on every
// rank, gradients all-reduced in one call over the region) then expert
// parameters (this rank's experts only). Offsets are 64-byte aligned.
//
// Initial values are a pure function of (seed, parameter name, global element
// index), so an expert gets the same weights whichever rank owns it.
//
// Under Precision::kBf16 (the backend's precision when allocate() runs) the
// store also keeps the values rounded to bfloat16, in the same layout: the
// GEMMs read weights from it instead of converting them at every use. The
// optimiser refreshes it in its update pass; whoever else writes values
// (initialize(), checkpoint loading) calls refresh_bf16() afterwards.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"

namespace vmoe {

enum class Region : uint8_t { kDense = 0, kExpert = 1 };
enum class Init : uint8_t { kZeros, kOnes, kConstant, kNormal, kXavierUniform };

struct ParamSpec {
  std::string name;             // e.g. "encoder/block_3/mlp/fc1/kernel"
  Shape shape;                  // this rank's shape
  Init init = Init::kZeros;
  float init_value = 0.0f;      // kConstant: the value; kNormal: the standard deviation
  int64_t fan_in = 0;           // kXavierUniform: limit = sqrt(6 / (fan_in + fan_out))
  int64_t fan_out = 0;
  Region region = Region::kDense;
  bool weight_decay = false;    // kernels decay; biases, norms, embeddings do not
  // Expert parameters are a slice [global_offset, global_offset + shape[0]) of a
  // global tensor whose first dimension is global_rows (0: not sliced).
  int64_t global_offset = 0;
  int64_t global_rows = 0;
};

using ParamId = int;

class ParamStore {
 public:
  ParamId add(ParamSpec spec);
  // Lays out and allocates values and gradients; no add() afterwards.
  void allocate(Backend& backend);
  bool allocated() const { return allocated_; }

  int count() const { return static_cast<int>(specs_.size()); }
  const ParamSpec& spec(ParamId id) const { return specs_.at(static_cast<size_t>(id)); }
  int64_t offset(ParamId id) const { return offsets_.at(static_cast<size_t>(id)); }
  int64_t numel(ParamId id) const { return num_elements(spec(id).shape); }
  std::optional<ParamId> find(const std::string& name) const;

  float* value(ParamId id) { return values_.data() + offset(id); }
  // The bf16 copy of a parameter (null without one: fp32, or allocated before
  // the precision was set), and the parameter as a GEMM input.
  uint16_t* value_bf16(ParamId id) {
    return values_bf16_.size() > 0 ? values_bf16_.data() + offset(id) : nullptr;
  }
  GemmInput weight(ParamId id) { return {value(id), value_bf16(id)}; }
  bool has_bf16_copy() const { return values_bf16_.size() > 0; }
  // Rewrites the bf16 copy from the values (after they were written other
  // than by the optimiser); nothing without a copy.
  void refresh_bf16();
  float* grad(ParamId id) { return grads_.data() + offset(id); }
  Tensor& values() { return values_; }
  Tensor& grads() { return grads_; }
  int64_t size() const { return values_.size(); }
  // [begin, end) of a region in the buffer.
  int64_t region_begin(Region r) const { return r == Region::kDense ? 0 : dense_size_; }
  int64_t region_end(Region r) const { return r == Region::kDense ? dense_size_ : size(); }
  int64_t num_parameters(Region r) const;  // excludes alignment padding

  void zero_grads();
  // Writes every parameter's initial value (see the header comment).
  void initialize(uint64_t seed);
  // A zero-filled buffer with this store's layout (optimiser state).
  Tensor make_like() const;

 private:
  Backend* backend_ = nullptr;
  std::vector<ParamSpec> specs_;
  std::vector<int64_t> offsets_;
  int64_t dense_size_ = 0;
  bool allocated_ = false;
  Tensor values_, grads_;
  DeviceTensor<uint16_t> values_bf16_;
};

// Host values of one parameter's initialisation (exposed for tests).
std::vector<float> initial_values(const ParamSpec& spec, uint64_t seed);

}  // namespace vmoe
