// What a run computes with: the CPU backend with the MPI world, or, in a
// build with the CUDA backend, one GPU per rank (chosen from the local rank)
// with an NCCL world whose collectives are ordered on the backend's stream.
// Either way the MPI world is handed out beside it (host()), for files and
// host values; make_groups() builds the process groups on both.
//
// Tests: VMOE_TEST_STAND_IN_WORLD=1 gives the CPU backend a world that is not
// the MPI world's type (comm/stand_in_communicator.h), the shape of the GPU
// path, so whole programs can prove on the CPU that nothing treats the world
// as MPI.
#pragma once

#include <memory>
#include <string>

#include "comm/mpi_communicator.h"
#include "comm/process_groups.h"
#include "core/backend.h"

namespace vmoe {

class Compute {
 public:
  // backend: "cpu" or "cuda"; device: the GPU, or -1 for local rank modulo
  // the visible devices. Errors clearly when CUDA is not built or absent, or
  // when two ranks would share a GPU. Collective over `mpi_world`.
  Compute(const std::string& backend, int device, MpiCommunicator& mpi_world);
  ~Compute();

  Backend& backend() { return *backend_; }
  // The world that moves tensors (NCCL for GPU memory).
  Communicator& world() { return device_world_ ? *device_world_ : *mpi_world_; }
  // The MPI world of the same ranks, for files and host values.
  MpiCommunicator& host() { return *mpi_world_; }
  // Process groups on world() and host() (see comm/process_groups.h).
  ProcessGroups make_groups(int experts, int ep_size, ExchangeMode exchange = ExchangeMode::kAuto) {
    return ProcessGroups(world(), host(), experts, ep_size, exchange);
  }

 private:
  MpiCommunicator* mpi_world_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Communicator> device_world_;
};

}  // namespace vmoe
