// vmoe_eval's configuration. The model comes from the checkpoint: its
// flagfile is replayed into vmoe_train's flags, except those the command
// line sets, which may only be the evaluation knobs (--eval_data,
// --eval_batch_size, --eval_capacity_ratio, --eval_num_selected,
// --eval_batch_priority, --eval_capacity_sweep, --expert_parallel,
// --expert_exchange, --prefetch). vmoe_eval's own flags are defined in eval_config.cpp.
#pragma once

#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "launch/fewshot.h"
#include "launch/train_config.h"

namespace vmoe {

struct FewShotTarget {
  std::string name;         // for the output: the folder's name
  std::string train, test;  // dataset files
};

struct EvalConfig {
  std::string checkpoint;  // the file
  CheckpointState state;
  // A folder: its older complete checkpoints, newest first, to fall back to
  // when `checkpoint` cannot be read (a single file has none: it must be sound).
  std::vector<std::string> fallbacks;
  std::vector<std::string> warnings;  // checkpoints passed over, and why
  TrainConfig run;  // the trained model, with this evaluation's knobs
  std::vector<std::string> eval_data;
  std::string out_dir;
  bool routing_analysis = true;
  std::vector<FewShotTarget> fewshot;
  FewShotSettings fewshot_settings;
};

// A checkpoint file, or the complete checkpoints of a checkpoint directory or
// of a run directory (<run>/checkpoints), newest first; errors name `flag`.
std::vector<std::string> resolve_checkpoints(const std::string& path,
                                             const std::string& flag = "--checkpoint");
// "data/x" (a folder with train.h5 and test.h5) or "a.h5:b.h5".
FewShotTarget parse_fewshot_target(const std::string& spec);
// A short name for an evaluation file: "<folder>_<stem>", e.g. fashion_mnist_test.
std::string dataset_name(const std::string& path);

EvalConfig eval_config_from_flags(int world);

}  // namespace vmoe
