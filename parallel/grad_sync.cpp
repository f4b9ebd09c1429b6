#include "parallel/grad_sync.h"

#include <algorithm>
#include <cmath>

#include "core/phase_timer.h"

namespace vmoe {

GradientSync::GradientSync(ParamStore& store, ProcessGroups& groups, int64_t bucket_floats)
    : store_(&store), groups_(&groups), bucket_(std::max<int64_t>(1, bucket_floats)) {}

void GradientSync::all_reduce() {
  PhaseScope timed("gradient_all_reduce");
  float* grads = store_->grads().data();
  auto reduce = [&](Communicator& comm, Region region) {
    if (comm.size() == 1) return;
    const int64_t begin = store_->region_begin(region), end = store_->region_end(region);
    for (int64_t at = begin; at < end; at += bucket_)
      comm.all_reduce(grads + at, std::min(bucket_, end - at), ReduceOp::kSum);
  };
  reduce(groups_->world(), Region::kDense);
  reduce(groups_->expert_replicas(), Region::kExpert);
}

void GradientSync::squared_norms(double* sq) {
  Backend& be = store_->grads().backend();
  const float* grads = store_->grads().data();
  const int64_t dense_end = store_->region_end(Region::kDense);
  be.sum_squares(dense_end, grads, sq);  // identical on every rank
  be.sum_squares(store_->size() - dense_end, grads + dense_end, sq + 1);
  groups_->world().all_reduce(sq + 1, 1, ReduceOp::kSum);  // device memory: the world
}

}  // namespace vmoe
