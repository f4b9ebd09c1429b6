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
#include "core/check.h"
#include "core/optimizer.h"
#include "core/param_store.h"

namespace vmoe {

// 1: the first format. 2: fixed-length string attributes and their checksum
// (attributes_crc32); version 1 files are still read.
inline constexpr int64_t kCheckpointFormatVersion = 2;

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

// A checkpoint that could not be written (every rank throws it, at the same
// point): the message names the cause, e.g. the disk being full.
class CheckpointWriteError : public AgreedError {
 public:
  using AgreedError::AgreedError;
};

// Bytes a checkpoint of `store` (and the optimiser's state) takes on disk,
// about: the tensors' global sizes plus HDF5's metadata.
int64_t planned_checkpoint_bytes(const ParamStore& store, const Optimizer* optimizer);

// Writes `path` collectively (MPI-IO over groups.host()): every rank calls it.
// No rank holds more than its own shard. Every collective step's outcome is
// agreed among the ranks before the next, so a failure on any rank (a full
// disk) throws CheckpointWriteError on all of them together, after they
// closed the file together: nothing hangs. `abort_after` (tests): abort the
// process after that many datasets, to simulate a crash mid-write (< 0:
// never); VMOE_TEST_FAIL_CHECKPOINT_DATASET=k makes the last rank's write of
// dataset k fail, to test the agreement.
void write_checkpoint(const std::string& path, ParamStore& store, Optimizer* optimizer,
                      const CheckpointState& state, ProcessGroups& groups, int abort_after = -1);

// The attributes of a checkpoint (cheap: no tensor is read), checked against
// the checksum stored with them (HDF5 keeps string attributes in its global
// heap, which it does not checksum).
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
