#include "comm/process_groups.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace vmoe {

ExpertPlacement place_experts(int world, int rank, int experts, int ep_size) {
  ExpertPlacement p;
  p.experts = experts;
  p.ep_size = ep_size;
  auto error = [&](const std::string& why) {
    return std::runtime_error("--expert_parallel=" + std::to_string(ep_size) + " with " +
                              std::to_string(world) + " ranks and --num_experts=" +
                              std::to_string(experts) + ": " + why);
  };
  if (ep_size < 1 || world % ep_size != 0)
    throw error("the expert-parallel size must divide the number of ranks");
  if (experts % ep_size != 0 && ep_size % experts != 0)
    throw error("the expert-parallel size must divide the number of experts, or be a multiple of it");
  p.ep_rank = rank % ep_size;
  if (ep_size <= experts) {
    p.local_experts = experts / ep_size;
    p.first_expert = p.ep_rank * p.local_experts;
  } else {
    p.replicas = ep_size / experts;
    p.local_experts = 1;
    p.first_expert = p.ep_rank / p.replicas;
    p.replica_index = p.ep_rank % p.replicas;
  }
  p.world_replicas = (world / ep_size) * p.replicas;
  return p;
}

ExchangeMode parse_exchange_mode(const std::string& name) {
  if (name == "auto") return ExchangeMode::kAuto;
  if (name == "all_to_all") return ExchangeMode::kAllToAll;
  throw std::invalid_argument("--expert_exchange must be auto or all_to_all, got '" + name + "'");
}

ProcessGroups::ProcessGroups(Communicator& world, MpiCommunicator& host, int experts, int ep_size,
                             ExchangeMode exchange)
    : world_(&world), host_(&host) {
  const int w = world.size(), r = world.rank();
  if (host.size() != w || host.rank() != r)
    throw std::invalid_argument("ProcessGroups: the host communicator (rank " +
                                std::to_string(host.rank()) + " of " + std::to_string(host.size()) +
                                ") is not the world (rank " + std::to_string(r) + " of " +
                                std::to_string(w) + ")");
  // 0: the largest valid size (all ranks when E allows); a size beyond the
  // world is capped to it, so a configuration also runs on fewer ranks.
  int p = std::min(ep_size, w);
  if (ep_size == 0) {
    p = w;
    while (p > 1 && (w % p != 0 || (experts > 0 && experts % p != 0 && p % experts != 0))) --p;
  }
  if (experts > 0) {
    placement_ = place_experts(w, r, experts, p);
  } else {
    placement_.ep_size = 1;
    placement_.world_replicas = w;
  }
  ep_ = world.split(experts > 0 ? r / placement_.ep_size : r, r);
  replicas_ = world.split(experts > 0 ? placement_.first_expert : 0, r);
  // Host memory only: an MPI world (the CPU path), never NCCL's.
  auto* ep_mpi = dynamic_cast<MpiCommunicator*>(ep_.get());
  if (exchange == ExchangeMode::kAuto && experts > 0 && ep_mpi != nullptr &&
      dynamic_cast<MpiCommunicator*>(world_) != nullptr)
    ep_peers_ = PeerBuffers::create(*ep_mpi);
}

}  // namespace vmoe
