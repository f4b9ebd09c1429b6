// Checks before the first step, so a run that cannot work says so at once
// instead of after hours: whether the model fits in memory, from vmoe_plan's
// estimate (launch/planner.h) against what this rank can have.
#pragma once

#include "comm/mpi_communicator.h"
#include "core/backend.h"
#include "launch/train_config.h"

namespace vmoe {

// Bytes a rank of this node may use: on a GPU the device's free memory; on
// the CPU the node's available memory (MemAvailable) shared by its
// `ranks_on_node` ranks.
int64_t memory_for_one_rank(Backend& backend, int ranks_on_node);

// Throws AgreedError (every rank) when the planned memory of a rank exceeds
// what it can have, with both figures and what would help. Collective.
void check_memory(const TrainConfig& c, Backend& backend, MpiCommunicator& world);

}  // namespace vmoe
