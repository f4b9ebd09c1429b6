// The training step's GEMMs replayed alone, for train_step_bench: the rate
// OpenBLAS reaches at the model's shapes, against which the step is held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/tensor.h"

namespace vmoe::bench {

// Memory no cache holds when a GEMM reaches it, as a step's activations come
// from DRAM: each take() is the next place in an arena several times the
// last-level cache, so a place comes round again only after the arena's worth
// of other places has passed through the caches.
class ColdArena {
 public:
  explicit ColdArena(vmoe::Backend& be);
  float* take(int64_t elements);

 private:
  vmoe::Tensor arena_;
  int64_t next_ = 0;
};

// A round of steps' GEMMs, replayed alone with OpenBLAS at the same shapes
// and betas (a beta of 0 costs OpenBLAS a pass zeroing C first) on buffers of
// their own (hot in cache, as a GEMM benchmark's are). The step's
// GFLOP/s is held against their rate: the rest of the step, and its colder
// operands, are what keep it below. Then replayed again with every operand
// from DRAM (ColdArena): the step's activations mostly come from there (they
// outgrow the caches), its weights mostly do not, so its GEMMs' rates fall
// between the two replays' (each shape's: --gemm_shapes).
class GemmReplay {
 public:
  explicit GemmReplay(vmoe::Backend& be) : cold_(be) {}
  struct Times {
    double flops, hot_seconds, cold_seconds;
  };
  // `calls` hot, after a warm-up pass over their first `warm` (one step's),
  // then cold.
  Times run(const std::vector<vmoe::GemmShape>& calls, size_t warm);
  // One line per distinct shape (--gemm_shapes): see gemm_replay.cpp.
  void print_shapes(const std::vector<vmoe::GemmShape>& calls);

 private:
  // Buffers large enough for every call; their FLOPs.
  double prepare(const std::vector<vmoe::GemmShape>& calls);
  std::vector<float> a_, b_, c_;
  ColdArena cold_;
};

}  // namespace vmoe::bench
