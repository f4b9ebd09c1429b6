// vmoe_plan's arithmetic: parameters, FLOPs, per-rank memory and all-to-all
// traffic of a training run, from its TrainerOptions and a cluster shape,
// without building anything. Pure functions; the numbers follow what this
// code's layers allocate (tests/planner_test.cpp checks the parameter counts
// and FLOPs against a constructed Trainer).
//
// Notation (one rank): b = global batch / ranks images, T tokens per image,
// n = b*T rows, D width, M MLP width, H heads, L blocks, K classes, F the
// head's input (pre-logits width P, else D), E experts, k = --num_selected,
// g = b / group_size routing groups, C = expert_capacity(k, S, ratio, E) with
// S = group_size*T items per group (token routing) or group_size (image
// routing), I = 1 (token) or T (image: a slot holds a whole image), and
// R = E*g*C*I, the rows of one MoE layer's fixed expert buffer.
//
// Memory (fp32 = 4 bytes; bf16 adds what the code adds: the weights' bf16
// copy, 2 bytes per parameter, and a bf16 copy beside each stored activation
// a GEMM reads (LN outputs, q|k|v, probabilities, context, GELU outputs, the
// experts' input and hidden values, patches, head inputs) and beside the
// workspace's gradients read by two GEMMs; the exchange's payloads travel and
// are transposed as bf16; gradients, optimiser state and the fp32 activations
// stay as they are):
//   parameters   4 * (dense + local experts)            gradients: the same
//   optimizer    Adam 8 bytes per parameter (2 moments), SGD 4 (momentum)
//   activations  what forward keeps for backward, for L blocks:
//     per block  LN1 out, mid, LN2 out, q|k|v (3), context = 7nD; LN stats 4n;
//                attention probabilities b*H*T^2 (the CPU's packed rows; the
//                GPU's strided layout pads rows to 8); block input (ViT's resid) nD
//                (head-major attention, --attention_pad_to=p > 0: q|k|v over
//                Tp = T padded to p, probabilities b*H*Tp^2, and under bf16
//                q|k|v and context as copies alone; its packed gradients and
//                the forward's temporaries in the scratch)
//     dense MLP  GELU input and output 2nM
//     MoE layer  router logits, noisy logits, noisy/clean probabilities and
//                their gradients 6nE, gates/choices/slots/rows 5nk
//     outside    patches b*Np*p^2*C, projection b*Np*D, encoder output and
//                its gradient 2nD, final LN, pooled features and gradient,
//                pre-logits 2bP, logits bK, dlogits bK, the uploaded images,
//                multi-label targets bK; image routing: the router's 6bE etc.
//   capacity     per MoE layer: dispatch and combine buffers 2RD plus the
//                experts' hidden pre-GELU, post-GELU and its gradient 3RM
//                (ExpertMlps keeps dact per layer)
//   exchange     per MoE layer with P > 1: send, returned, received and
//                to-return buffers 4RD fp32; bf16: send and returned 2RD fp32
//                plus the sent and received payloads 2RD*2 B
//   scratch      the backward workspace, shared by all blocks: nD + 3nD + nD
//                + b*H*T^2 (+ nM with a dense MLP, + 2RD with MoE layers)
//   all-reduce   one --allreduce_bucket_mb bucket (in place; counted once for
//                the library's reduction buffer)
//   bf16 staging the one GEMM input converted inside its GEMM (the patch
//                projection's gradient, b*Np*D halves; a temporary on a GPU)
// With recomputation (vmoe_train --remat) only the block inputs (L+1)nD are
// kept, plus one block's full activations, one MoE layer's capacity and
// exchange buffers (measured: 94-97% of the planned saving, remat_bench.sh).
//
// All-to-all: each MoE layer with P > 1 exchanges its R*D-element buffer four
// times per step (dispatch and combine, forward and backward); the rank sends
// the (P-1)/P of it that goes to other ranks, in fp32 or bf16.
#pragma once

#include <cstdint>
#include <string>

#include "launch/trainer.h"

namespace vmoe {

struct ClusterShape {
  int ranks = 1;
  int devices_per_node = 8;
  double device_memory_gib = 80;  // per device (an "80 GB" A100/H100 has 80 GiB)
  int expert_parallel = 0;        // as --expert_parallel: 0 = the largest valid size
  double headroom = 0.10;         // fraction kept free for the framework and allocator
  // fp32 expert exchanges in shared memory (the CPU, --expert_exchange=auto,
  // each EP group on one node): the experts' input and output buffers are
  // two windows per MoE layer, their gradients two windows for all of them,
  // and nothing is sent or received.
  bool exchange_in_place = false;
};

struct ParamCounts {
  int64_t total = 0;
  int64_t dense = 0;      // everything but the experts (routers included)
  int64_t experts = 0;    // every expert of every MoE layer, once
  int64_t per_rank = 0;   // dense + this rank's experts
  int64_t per_rank_experts = 0;
};

struct MemoryBreakdown {  // bytes on one rank
  double parameters = 0, gradients = 0, optimizer = 0;
  double activations = 0, capacity = 0, exchange = 0, scratch = 0;
  double allreduce = 0, bf16_staging = 0;
  double total() const {
    return parameters + gradients + optimizer + activations + capacity + exchange + scratch +
           allreduce + bf16_staging;
  }
};

struct Plan {
  // Layout.
  int ranks = 1, expert_parallel = 1, local_experts = 0, expert_world_replicas = 1;
  int moe_layers = 0, capacity = 0;
  int64_t rank_batch = 0, capacity_rows = 0;
  bool bf16 = false;
  ParamCounts params;
  // Matrix-product FLOPs per image (Trainer::forward_flops_per_image).
  double forward_flops = 0;       // training k
  double eval_forward_flops = 0;  // evaluation k (what vmoe_train prints)
  double train_flops = 0;         // 3x forward: forward + backward
  double step_flops_per_rank = 0; // train_flops * rank batch
  MemoryBreakdown memory;         // as vmoe_train allocates
  MemoryBreakdown memory_remat;   // with activation recomputation
  double device_bytes = 0, usable_bytes = 0;  // usable = device * (1 - headroom)
  double headroom = 0;
  bool fits = false, fits_remat = false;
  double margin = 0, margin_remat = 0;  // usable - total (negative: short by)
  double all_to_all_bytes = 0;          // sent to other ranks per step
  double all_to_all_inter_node_bytes = 0;  // of which to other nodes
  double allreduce_bytes = 0;           // gradient all-reduce sent per step (ring)
};

// The expert-parallel size ProcessGroups would pick (0 = largest valid,
// capped at the world); throws like place_experts when impossible.
int resolve_expert_parallel(int ranks, int experts, int requested);

// Parameter counts only (also for tests): exact, as the ParamStore counts them.
ParamCounts count_parameters(const ViTConfig& model, const MoeConfig& moe, int expert_parallel);

// ViT::forward_flops_per_image + moe_forward_flops_per_image.
double forward_flops_per_image(const ViTConfig& model, const MoeConfig& moe, bool training);

Plan plan_run(const TrainerOptions& options, const ClusterShape& cluster);

// A readable table, and the same as a JSON object.
std::string format_plan(const Plan& plan, const std::string& title);
std::string plan_json(const Plan& plan, const std::string& title);

}  // namespace vmoe
