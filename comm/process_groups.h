// The communicators of a distributed run and where the experts live.
//
// The world is cut into expert-parallel (EP) groups of P consecutive ranks;
// the E experts of every MoE layer are spread over each group:
//   P <= E (P divides E): EP rank j holds experts [j*E/P, (j+1)*E/P);
//   P >  E (E divides P): EP rank j holds expert j / R, R = P/E replicas of
//     each expert per group, and replica j % R receives the j%R-th slice of
//     every rank's groups.
// Either way a rank's fixed expert buffer [E, groups, C, D] is P equal
// consecutive chunks, chunk j for EP rank j. Ranks holding the same experts
// (across EP groups, and the R replicas within one) form a replica group,
// over which expert gradients are summed; dense gradients are summed over
// the world.
//
// Two communicators of the same ranks are handed out: world() moves the
// tensors, in the backend's memory (MPI on CPUs, NCCL on GPUs), and host()
// is always MPI, for what happens on the host: checkpoint files (MPI-IO),
// reductions of host values (losses, counts, metrics). Nothing may assume
// world() is host() or an MpiCommunicator.
//
// Where world() is MPI (the CPU path) and an EP group's ranks share a node,
// the group also gets PeerBuffers (comm/peer_buffers.h): its exchanges then
// read each other's buffers in shared memory instead of sending them.
#pragma once

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"
#include "comm/peer_buffers.h"

namespace vmoe {

struct ExpertPlacement {
  int experts = 0;        // E
  int ep_size = 1;        // P
  int ep_rank = 0;        // j
  int local_experts = 0;  // E/P, or 1 when P > E
  int first_expert = 0;   // global index of the first local expert
  int replicas = 1;       // R: copies of each expert within an EP group
  int replica_index = 0;  // j % R
  // Copies of each expert over the whole world (the norm counts each once).
  int world_replicas = 1;
};

// Throws (message naming the flags) unless P divides the world and P, E
// divide one another.
ExpertPlacement place_experts(int world, int rank, int experts, int ep_size);

// How an EP group moves expert buffers (--expert_exchange): kAuto reads
// peers' buffers in shared memory where the world is MPI and the group is on
// one node, else MPI all-to-all; kAllToAll always sends them.
enum class ExchangeMode { kAuto, kAllToAll };
// "auto" or "all_to_all"; throws naming --expert_exchange otherwise.
ExchangeMode parse_exchange_mode(const std::string& name);

class ProcessGroups {
 public:
  // ep_size 0 picks the largest valid size (the whole world when E allows);
  // sizes above the world are capped to it. experts 0 (dense): no EP groups.
  // `world` and `host` must hold the same ranks in the same order.
  ProcessGroups(Communicator& world, MpiCommunicator& host, int experts, int ep_size,
                ExchangeMode exchange = ExchangeMode::kAuto);
  // The CPU path: one MPI communicator is both.
  ProcessGroups(MpiCommunicator& world, int experts, int ep_size,
                ExchangeMode exchange = ExchangeMode::kAuto)
      : ProcessGroups(world, world, experts, ep_size, exchange) {}

  Communicator& world() { return *world_; }
  MpiCommunicator& host() { return *host_; }
  Communicator& expert_parallel() { return *ep_; }
  Communicator& expert_replicas() { return *replicas_; }
  // The EP group's shared buffers; null when its exchanges are all-to-alls.
  PeerBuffers* expert_peer_buffers() { return ep_peers_.get(); }
  const ExpertPlacement& placement() const { return placement_; }

 private:
  Communicator* world_;
  MpiCommunicator* host_;
  std::unique_ptr<Communicator> ep_, replicas_;
  std::unique_ptr<PeerBuffers> ep_peers_;  // after ep_: released before it
  ExpertPlacement placement_;
};

}  // namespace vmoe
