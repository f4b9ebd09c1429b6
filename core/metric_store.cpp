#include "core/metric_store.h"

#include <algorithm>
#include <bit>

#include "core/check.h"

namespace vmoe {

MetricId MetricStore::add(int64_t n) {
  VMOE_CHECK(!allocated(), "MetricStore::add after allocate()");
  VMOE_ASSERT(n > 0);
  offsets_.push_back(offsets_.back() + n);
  return static_cast<MetricId>(offsets_.size()) - 2;
}

void MetricStore::allocate(Backend& backend) {
  VMOE_CHECK(!allocated(), "MetricStore::allocate twice");
  backend_ = &backend;
  words_.bind(backend);
  words_.resize({std::max<int64_t>(offsets_.back(), 1)});
  host_.assign(static_cast<size_t>(words_.size()), 0);
  zero();
}

uint64_t* MetricStore::slot(MetricId id) {
  VMOE_ASSERT(allocated() && id >= 0 && id + 1 < static_cast<int>(offsets_.size()));
  return words_.data() + offsets_[static_cast<size_t>(id)];
}

void MetricStore::read() {
  VMOE_ASSERT(allocated());
  backend_->copy_to_host(host_.data(), words_.data(), host_.size() * sizeof(uint64_t));
}

uint64_t MetricStore::host_word(MetricId id, int64_t i) const {
  VMOE_ASSERT(allocated() && id >= 0 && id + 1 < static_cast<int>(offsets_.size()));
  const int64_t at = offsets_[static_cast<size_t>(id)] + i;
  VMOE_ASSERT(i >= 0 && at < offsets_[static_cast<size_t>(id) + 1]);
  return host_[static_cast<size_t>(at)];
}

double MetricStore::host_sum(MetricId id, int64_t i) const {
  return std::bit_cast<double>(host_word(id, i));
}

int64_t MetricStore::host_count(MetricId id, int64_t i) const {
  return static_cast<int64_t>(host_word(id, i));
}

void MetricStore::zero() {
  VMOE_ASSERT(allocated());
  backend_->zero(words_.data(), static_cast<size_t>(words_.size()) * sizeof(uint64_t));
}

}  // namespace vmoe
