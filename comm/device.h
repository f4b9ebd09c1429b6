// Which GPU a rank uses: one per rank, by the rank's index on its node.
#pragma once

#include "comm/device_assignment.h"

namespace vmoe {

// This process's index among the ranks on its node: OMPI_COMM_WORLD_LOCAL_RANK
// when Open MPI's launcher set it, otherwise the rank in the shared-memory
// split of MPI_COMM_WORLD (collective over the world then), 0 without MPI.
int local_rank();

// The CUDA device this rank should use: `requested` when >= 0 (it must
// exist), else local_rank() % the visible devices. Throws when the process
// sees no device. Does not make the device current (CudaBackend does).
int choose_device(int requested = -1);

// This process's node name and `device`'s UUID, index and the visible count.
RankDevice describe_device(int device);

}  // namespace vmoe
