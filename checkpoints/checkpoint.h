// One checkpoint = one HDF5 file (schema in checkpoints/README.md):
//   /params/<name>             every parameter, global shape (experts [E, ...])
//   /optimizer/<state>/<name>  adam_m and adam_v, or sgd_momentum, same layout
//   root attributes            format_version, step, seed, global_batch, the
//                              layout it was written with, the model and
//                              optimizer flags, and the full flagfile.
// Every dataset is chunked (one chunk per expert) with Fletcher32 checksums,
// so corruption is reported with the file and dataset names.
#pragma once

#include <cstdint>
#include <regex>
#include <string>
#include <vector>

#include "comm/process_groups.h"
#include "core/optimizer.h"
#include "core/param_store.h"

namespace vmoe {

inline constexpr int64_t kCheckpointFormatVersion = 1;

struct CheckpointState {
  int64_t step = 0;          // optimiser steps taken = global batches consumed
  uint64_t seed = 0;         // every random stream is a function of (seed, step)
  int64_t global_batch = 0;
  // "name=value" lines: the flags that define the parameters' shapes, and the
  // optimiser's; compared on resume.
  std::string model_flags, optimizer_flags;
  std::string flagfile;      // everything, for the record
  // The layout it was written with (informational: any layout can read it).
  int64_t world = 1, expert_parallel = 1;
};

// Writes `path` collectively (MPI-IO over groups.host()): every rank calls it. No rank
// holds more than its own shard. `abort_after` (tests): abort the process
// after that many datasets, to simulate a crash mid-write (< 0: never).
void write_checkpoint(const std::string& path, ParamStore& store, Optimizer* optimizer,
                      const CheckpointState& state, ProcessGroups& groups, int abort_after = -1);

// The attributes of a checkpoint (cheap: no tensor is read).
CheckpointState read_checkpoint_state(const std::string& path);

struct LoadRules {
  bool optimizer = true;      // also restore the optimiser state (resume)
  // Fine-tuning: parameters whose name matches one of these keep their fresh
  // initialisation; a head whose class count differs is re-initialised; a
  // position embedding of another patch grid is resized bilinearly.
  std::vector<std::regex> skip = {};
  bool fine_tune = false;
};

// Per-parameter outcome of a load, for the log.
struct LoadReport {
  std::vector<std::string> loaded, skipped, reinitialised, resized;
};

// Reads this rank's shard of every parameter (and optimiser state) into the
// store, for any number of ranks and expert placement. Errors name the file
// and the dataset.
LoadReport load_checkpoint(const std::string& path, ParamStore& store, Optimizer* optimizer,
                           const LoadRules& rules);

// "a=1\nb=2" -> the names whose values differ, as "name: checkpoint X, now Y".
std::vector<std::string> differing_flags(const std::string& saved, const std::string& now);

}  // namespace vmoe
