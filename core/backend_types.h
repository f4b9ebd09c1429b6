// The plain values the backend interface (core/backend.h) takes and reports:
// GEMM operands and batch strides, the precision mode, the router's loss
// arguments, and the counters and clocks tests and benchmarks read.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

namespace vmoe {

enum class Trans : bool { kNo = false, kYes = true };

// Inputs and outputs of Backend::router_aux_losses (formulas in parallel/README.md).
struct RouterAuxArgs {
  int64_t groups = 0;
  int items = 0;    // items (tokens or images) per group, S
  int experts = 0;  // E
  int k = 0;
  float sigma = 0;                      // router noise std; the load loss needs sigma > 0
  const float* logits = nullptr;        // [groups * items, E] clean router logits
  const float* noisy_logits = nullptr;  // logits + noise
  const float* probs = nullptr;         // softmax(logits)
  const float* noisy_probs = nullptr;   // softmax(noisy_logits): the gates
  const int32_t* top_index = nullptr;   // [groups * items, k] chosen experts, best first
  float importance_weight = 0, load_weight = 0, gshard_weight = 0, z_weight = 0;
  float grad_scale = 0;           // d(objective) / d(per-group loss), e.g. 1 / global groups
  float* group_losses = nullptr;  // [groups, 4]: importance, load, gshard, z (unweighted)
  float* d_logits = nullptr;      // [groups * items, E] += gradient of the weighted losses
};

// Strides (in elements) of A, B and C between consecutive matrices of one
// batch level. Batched GEMMs have two levels (e.g. images x heads, because a
// head's Q lives at b*T*3D + h*hd), each with its own count and strides.
//
// live (the outer level's; nullable, [outer.count * inner.count], read on the
// host): entry (i, j)'s operands hold data only in their first
// live[i * inner.count + j] rows along live_axis, the rest unspecified, and
// the backend skips the rest. kM: A's rows past it are not read, and C's
// rows there become beta * C. kK: the terms past it are left out. It is
// each expert's kept rows of packed expert buffers, and only a backend that
// packs them (Backend::skips_empty_slots) is given one. An inner level's
// live is not read.
enum class LiveAxis { kM, kK };
struct BatchLevel {
  int64_t count = 1;
  int64_t a = 0, b = 0, c = 0;
  const int32_t* live = nullptr;
  LiveAxis live_axis = LiveAxis::kM;
};

// Mixed precision (--precision=bf16): matrix products take their inputs
// rounded to bfloat16 and accumulate and write fp32 (those only bf16 ops
// read, gemm_batched_to_bf16, write bfloat16); expert all-to-all
// buffers travel as bfloat16. Master weights, optimiser state, the router,
// softmax, LayerNorm statistics and losses stay fp32.
enum class Precision { kFp32, kBf16 };

// A matrix product's input: its fp32 values and, optionally, the same values
// already rounded to bfloat16 in the same layout (element i of one is element
// i of the other, so views such as a head's K at qkv + D carry over). Under
// Precision::kBf16 a GEMM uses the bf16 copy as it is and converts the fp32
// values only when no copy is given; such conversions are counted
// (Bf16Conversions). Weights have copies refreshed by the optimiser, and the
// ops producing GEMM inputs write copies beside their fp32 outputs.
struct GemmInput {
  GemmInput(const float* f32) : f32(f32) {}  // NOLINT: implicit, a plain fp32 input
  GemmInput(const float* f32, const uint16_t* bf16) : f32(f32), bf16(bf16) {}
  GemmInput offset(int64_t n) const {
    return {f32 != nullptr ? f32 + n : nullptr, bf16 != nullptr ? bf16 + n : nullptr};
  }
  const float* f32;
  const uint16_t* bf16 = nullptr;
};

// Conversions to bfloat16 a backend has made under Precision::kBf16: GEMM
// inputs that came without a copy (converted inside the GEMM, once per call)
// and explicit to_bf16 calls. A training step converts no weight and each
// activation at most once; tests assert it on the CPU.
struct Bf16Conversions {
  int64_t gemm_inputs = 0, explicit_calls = 0;
  int64_t total() const { return gemm_inputs + explicit_calls; }
};

// Host<->device copies and host waits a backend has made: a training step
// makes none of them (the inputs are staged before it, metrics are read on
// the steps that log), and tests assert it on the CPU, where they are cheap
// but counted the same. Every copy to the host waits for the device.
struct HostTraffic {
  int64_t to_device = 0, to_host = 0, syncs = 0;
  int64_t total() const { return to_device + to_host + syncs; }
};

// Told when the host begins and ends a wait for the device. The collective
// watchdog (comm/watchdog.h) watches these through an adapter the launcher
// installs: a stuck NCCL collective shows as a wait that never ends.
class WaitObserver {
 public:
  virtual ~WaitObserver() = default;
  virtual void wait_begins(const char* what) = 0;
  virtual void wait_ends() = 0;
};

// Points on the host's steady clock (timing of synchronous work).
class HostTimeMarks {
 public:
  int mark() {
    marks_.push_back(std::chrono::steady_clock::now());
    return static_cast<int>(marks_.size()) - 1;
  }
  double seconds(int from, int to) const {
    return std::chrono::duration<double>(marks_.at(static_cast<size_t>(to)) -
                                         marks_.at(static_cast<size_t>(from)))
        .count();
  }
  void clear() { marks_.clear(); }

 private:
  std::vector<std::chrono::steady_clock::time_point> marks_;
};

}  // namespace vmoe
