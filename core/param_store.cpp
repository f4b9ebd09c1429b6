#include "core/param_store.h"

#include <cmath>

#include "core/check.h"
#include "core/random.h"

namespace vmoe {
namespace {

constexpr int64_t kAlign = 16;  // floats: 64 bytes

int64_t align_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

ParamId ParamStore::add(ParamSpec spec) {
  VMOE_ASSERT(!allocated_);
  VMOE_CHECK(!find(spec.name), "parameter '", spec.name, "' registered twice");
  for (int64_t d : spec.shape) VMOE_CHECK(d > 0, "parameter '", spec.name, "' has a dimension ", d);
  specs_.push_back(std::move(spec));
  return static_cast<ParamId>(specs_.size() - 1);
}

std::optional<ParamId> ParamStore::find(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return static_cast<ParamId>(i);
  return std::nullopt;
}

void ParamStore::allocate(Backend& backend) {
  VMOE_ASSERT(!allocated_);
  backend_ = &backend;
  offsets_.assign(specs_.size(), 0);
  int64_t cursor = 0;
  for (Region region : {Region::kDense, Region::kExpert}) {
    for (size_t i = 0; i < specs_.size(); ++i) {
      if (specs_[i].region != region) continue;
      offsets_[i] = cursor;
      cursor += align_up(num_elements(specs_[i].shape));
    }
    if (region == Region::kDense) dense_size_ = cursor;
  }
  values_.bind(backend);
  grads_.bind(backend);
  values_.resize({cursor});
  grads_.resize({cursor});
  backend.fill(values_.data(), cursor, 0.0f);
  backend.fill(grads_.data(), cursor, 0.0f);
  if (backend.precision() == Precision::kBf16) {
    values_bf16_.bind(backend);
    values_bf16_.resize({cursor});
    backend.zero(values_bf16_.data(), cursor * sizeof(uint16_t));  // bf16(0): zero bits
  }
  allocated_ = true;
}

void ParamStore::refresh_bf16() {
  if (has_bf16_copy()) backend_->to_bf16(values_.size(), values_.data(), values_bf16_.data());
}

int64_t ParamStore::num_parameters(Region r) const {
  int64_t n = 0;
  for (const ParamSpec& s : specs_)
    if (s.region == r) n += num_elements(s.shape);
  return n;
}

void ParamStore::zero_grads() { backend_->fill(grads_.data(), grads_.size(), 0.0f); }

Tensor ParamStore::make_like() const {
  VMOE_ASSERT(allocated_);
  Tensor t(*backend_, {size()});
  backend_->fill(t.data(), t.size(), 0.0f);
  return t;
}

std::vector<float> initial_values(const ParamSpec& spec, uint64_t seed) {
  const int64_t n = num_elements(spec.shape);
  std::vector<float> out(static_cast<size_t>(n));
  const int64_t row = spec.shape.empty() ? 1 : n / spec.shape[0];
  const int64_t first = spec.global_offset * row;  // global index of element 0
  const uint64_t stream = fnv1a(spec.name);
  const uint64_t key = seed ^ (static_cast<uint64_t>(Stream::kInit) << 56);
  switch (spec.init) {
    case Init::kZeros:
      break;
    case Init::kOnes:
      std::fill(out.begin(), out.end(), 1.0f);
      break;
    case Init::kConstant:
      std::fill(out.begin(), out.end(), spec.init_value);
      break;
    case Init::kNormal:
      for (int64_t i = 0; i < n; ++i)
        out[static_cast<size_t>(i)] = spec.init_value * normal_at(key, stream, first + i);
      break;
    case Init::kXavierUniform: {
      VMOE_ASSERT(spec.fan_in > 0 && spec.fan_out > 0);
      const float limit = std::sqrt(6.0f / static_cast<float>(spec.fan_in + spec.fan_out));
      for (int64_t i = 0; i < n; ++i)
        out[static_cast<size_t>(i)] = limit * (2.0f * uniform_at(key, stream, first + i) - 1.0f);
      break;
    }
  }
  return out;
}

void ParamStore::initialize(uint64_t seed) {
  VMOE_ASSERT(allocated_);
  for (int id = 0; id < count(); ++id) {
    const std::vector<float> host = initial_values(spec(id), seed);
    backend_->copy_to_device(value(id), host.data(), host.size() * sizeof(float));
  }
  refresh_bf16();
}

}  // namespace vmoe
