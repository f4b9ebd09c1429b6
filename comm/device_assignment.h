// Which GPU each rank uses, and the check that no two ranks share one: NCCL
// refuses a communicator with two ranks on one GPU ("Duplicate GPU
// detected"), so the job stops before that, with the ranks, the GPU and the
// fix named. Pure functions and MPI only, so the CPU tests cover them.
#pragma once

#include <string>
#include <vector>

#include "comm/mpi_communicator.h"

namespace vmoe {

struct RankDevice {
  std::string node;  // host name
  std::string uuid;  // the GPU's UUID: the same GPU has it whatever CUDA_VISIBLE_DEVICES says
  int index = 0;     // the CUDA device index the rank uses
  int visible = 0;   // the devices the rank sees
};

// Empty when every rank has a GPU of its own; otherwise the error to stop
// with, naming the first two ranks that share one. `device_flag`: the index
// came from --device rather than from the local rank.
std::string shared_device_error(const std::vector<RankDevice>& ranks, bool device_flag);

// Every rank's RankDevice, in rank order. Collective over `comm`.
std::vector<RankDevice> gather_rank_devices(MpiCommunicator& comm, const RankDevice& mine);

}  // namespace vmoe
