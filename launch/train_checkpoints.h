// vmoe_train's use of checkpoints: resuming a run, starting from another
// run's parameters (fine-tuning), and the state each save records.
#pragma once

#include <functional>
#include <string>

#include "checkpoints/checkpoint_dir.h"
#include "launch/train_config.h"
#include "launch/trainer.h"

namespace vmoe {

using Say = std::function<void(const std::string&)>;

CheckpointState checkpoint_state(const TrainConfig& c, Trainer& trainer, ProcessGroups& groups);

// --resume: restores parameters, optimiser state and step from the newest
// readable checkpoint; returns the step to continue from (0 without one).
int64_t resume(CheckpointDir& dir, const TrainConfig& c, Trainer& trainer, ProcessGroups& groups,
               const Say& say);

// --init_from: loads the parameters only, with the fine-tuning rules.
void init_from(const TrainConfig& c, Trainer& trainer, const Say& say);

// A new run (no --resume) must not share its checkpoint folder with an earlier
// run's checkpoints: throws, naming them and the ways out. Collective.
void refuse_foreign_checkpoints(const CheckpointDir& dir, MpiCommunicator& host);

}  // namespace vmoe
