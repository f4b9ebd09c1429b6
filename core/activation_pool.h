// Storage for what a block's forward keeps for its backward, for activation
// recomputation (--remat).
//
// Each layer lists the tensors it keeps between forward and backward in an
// ActivationSet (collect_activations()). Without remat a block simply owns
// them. With remat the ViT keeps only the blocks' inputs, and a block borrows
// one ActivationPool's storage for its forward (which is dropped afterwards)
// and again for the recompute right before its backward: the tensors are
// swapped with the pool's, so every block reuses the same memory, sized by
// the largest block, and the steady state allocates nothing.
#pragma once

#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

class ActivationSet {
 public:
  template <typename... Ts>
  void add(DeviceTensor<Ts>&... tensors) {
    (slots<Ts>().push_back(&tensors), ...);
  }
  template <typename T>
  std::vector<DeviceTensor<T>*>& slots() {
    return std::get<std::vector<DeviceTensor<T>*>>(slots_);
  }

 private:
  std::tuple<std::vector<DeviceTensor<float>*>, std::vector<DeviceTensor<int32_t>*>,
             std::vector<DeviceTensor<int64_t>*>, std::vector<DeviceTensor<uint16_t>*>>
      slots_;
};

class ActivationPool {
 public:
  explicit ActivationPool(Backend& backend) : backend_(&backend) {}
  ActivationPool(const ActivationPool&) = delete;
  ActivationPool& operator=(const ActivationPool&) = delete;

  // While a Loan lives, the set's tensors hold the pool's storage (grown as
  // the borrower resizes them); its end hands the storage back and leaves the
  // set's tensors empty, so nothing of the block outlives the loan.
  class Loan {
   public:
    Loan(ActivationPool& pool, ActivationSet& set) : pool_(&pool), set_(&set) { pool.swap(set); }
    ~Loan() { pool_->swap(*set_); }
    Loan(const Loan&) = delete;
    Loan& operator=(const Loan&) = delete;

   private:
    ActivationPool* pool_;
    ActivationSet* set_;
  };

 private:
  // The i-th tensor of each type in a set shares the pool's i-th tensor of
  // that type: blocks list their tensors in the same order (block, attention,
  // then the feed-forward's largest first), so the pool is about one block.
  void swap(ActivationSet& set) {
    swap_all(set.slots<float>(), std::get<0>(pool_));
    swap_all(set.slots<int32_t>(), std::get<1>(pool_));
    swap_all(set.slots<int64_t>(), std::get<2>(pool_));
    swap_all(set.slots<uint16_t>(), std::get<3>(pool_));
  }
  template <typename T>
  void swap_all(std::vector<DeviceTensor<T>*>& borrowers, std::vector<DeviceTensor<T>>& pool) {
    while (pool.size() < borrowers.size()) pool.emplace_back(*backend_);
    for (size_t i = 0; i < borrowers.size(); ++i) std::swap(*borrowers[i], pool[i]);
  }

  Backend* backend_;
  std::tuple<std::vector<DeviceTensor<float>>, std::vector<DeviceTensor<int32_t>>,
             std::vector<DeviceTensor<int64_t>>, std::vector<DeviceTensor<uint16_t>>>
      pool_;
};

}  // namespace vmoe
