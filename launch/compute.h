// What a run computes with: the CPU backend with the MPI world, or, in a
// build with the CUDA backend, one GPU per rank (chosen from the local rank)
// with an NCCL world whose collectives are ordered on the backend's stream.
#pragma once

#include <memory>
#include <string>

#include "comm/mpi_communicator.h"
#include "core/backend.h"

namespace vmoe {

class Compute {
 public:
  // backend: "cpu" or "cuda"; device: the GPU, or -1 for local rank modulo
  // the visible devices. Errors clearly when CUDA is not built or absent.
  Compute(const std::string& backend, int device, MpiCommunicator& mpi_world);
  ~Compute();

  Backend& backend() { return *backend_; }
  // The world to build process groups on (NCCL for GPU memory).
  Communicator& world() { return device_world_ ? *device_world_ : *mpi_world_; }

 private:
  MpiCommunicator* mpi_world_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Communicator> device_world_;
};

}  // namespace vmoe
