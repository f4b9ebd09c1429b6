// Training metrics that live on the device. Whatever measures something
// during training (a router's losses and expert counts, the loss, the
// gradient norm) adds its accumulators here when it is built, as parameters
// are added to the ParamStore; the step's ops add into them on the device;
// read() brings every accumulator to the host in one copy, on the steps that
// log. So a training step makes no host copy and no host wait for metrics.
//
// Slots are doubles (sums, means' numerators) or int64 counts, one arena of
// 8-byte words.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"

namespace vmoe {

using MetricId = int;

class MetricStore {
 public:
  // n accumulators; before allocate().
  MetricId add(int64_t n);
  // Allocates every slot on the device, zeroed; no add() afterwards.
  void allocate(Backend& backend);
  bool allocated() const { return backend_ != nullptr; }

  // Device views.
  double* sums(MetricId id) { return reinterpret_cast<double*>(slot(id)); }
  int64_t* counts(MetricId id) { return reinterpret_cast<int64_t*>(slot(id)); }

  // Every slot to the host: one copy. The host values below are those of
  // the last read().
  void read();
  double host_sum(MetricId id, int64_t i = 0) const;
  int64_t host_count(MetricId id, int64_t i = 0) const;
  // Every slot = 0, on the device.
  void zero();

 private:
  uint64_t* slot(MetricId id);
  uint64_t host_word(MetricId id, int64_t i) const;
  Backend* backend_ = nullptr;
  std::vector<int64_t> offsets_ = {0};  // slot i is [offsets_[i], offsets_[i + 1])
  DeviceTensor<uint64_t> words_;
  std::vector<uint64_t> host_;
};

}  // namespace vmoe

namespace vmoe {

// The store a layer reports to: the trainer's, which reads and zeroes it for
// everyone, or, for a layer built without one (tests, a layer on its own), a
// private store that the layer reads and zeroes itself (begin_read/end_read).
class MetricStoreRef {
 public:
  explicit MetricStoreRef(MetricStore* shared)
      : own_(shared ? nullptr : std::make_unique<MetricStore>()),
        store_(shared ? shared : own_.get()) {}
  MetricStore* get() { return store_; }
  MetricStore* operator->() { return store_; }
  const MetricStore* operator->() const { return store_; }
  // After the layer's last add(): a private store is allocated now.
  void ready(Backend& be) {
    if (own_ && !own_->allocated()) own_->allocate(be);
  }
  // Around reading host values: a private store is read, then zeroed.
  void begin_read() {
    if (own_) own_->read();
  }
  void end_read() {
    if (own_) own_->zero();
  }

 private:
  std::unique_ptr<MetricStore> own_;
  MetricStore* store_;
};

}  // namespace vmoe
