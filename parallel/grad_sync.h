// Gradient synchronisation for data- and expert-parallel training.
//
// Every rank scales its share of the loss by 1 / global batch (and its
// groups' auxiliary losses by 1 / global groups), so summing gradients gives
// exactly the single-process gradient: dense gradients are summed over the
// world in a few large bucketed all-reduces over the contiguous dense region,
// expert gradients over the ranks holding the same experts. The global norm
// counts every expert once.
#pragma once

#include <cstdint>

#include "comm/process_groups.h"
#include "core/param_store.h"

namespace vmoe {

class GradientSync {
 public:
  // bucket_floats: the most one all-reduce moves (e.g. 8M floats = 32 MiB).
  GradientSync(ParamStore& store, ProcessGroups& groups, int64_t bucket_floats);

  void all_reduce();
  // The squared L2 norm of the (already summed) gradients of the whole model,
  // on the device: sq[0] = the dense region's (the same on every rank), sq[1]
  // = the expert regions' summed over the world, which counts each expert
  // expert_divisor() times.
  void squared_norms(double* sq);
  double expert_divisor() const { return groups_->placement().world_replicas; }
  int64_t bucket_floats() const { return bucket_; }

 private:
  ParamStore* store_;
  ProcessGroups* groups_;
  int64_t bucket_;
};

}  // namespace vmoe
