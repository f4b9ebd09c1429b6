// vmoe_train's configuration: every flag, validated, in one struct.
// The flags are defined in train_config.cpp; `vmoe_train --help` lists them.
#pragma once

#include <cstdint>
#include <regex>
#include <string>
#include <vector>

#include "datasets/dataset_info.h"
#include "launch/trainer.h"

namespace vmoe {

struct TrainConfig {
  TrainerOptions trainer;
  std::string train_data, eval_data, run_dir;
  DatasetInfo train_info, eval_info;  // eval_info is empty without --eval_data
  int64_t eval_batch_size = 0;
  int crop_padding = 0;
  bool flip = false;
  int prefetch = 2;
  int loader_threads = 1;            // encoded data: decode threads per loader
  bool uint8_pixels = false;         // training batches as 8-bit pixels, scaled on the device
  float min_area = 0.05f;            // encoded data: inception crop's smallest area fraction
  float eval_crop_fraction = 0.875f;  // encoded data: central crop at evaluation
  float mixup_alpha = 0.0f;          // multi-label training: mixup, 0 = off
  int max_open_shards = 16;
  int64_t total_steps = 0;
  double num_epochs = 0;
  int64_t log_every = 0;
  int64_t eval_every = 0;  // 0: evaluate only at the end
  std::vector<double> eval_capacity_sweep;  // MoE: final evaluation at these ratios
  int expert_parallel = 0;                  // ranks per expert-parallel group (0: all)
  ExchangeMode expert_exchange = ExchangeMode::kAuto;  // --expert_exchange
  std::string backend = "cpu";              // or "cuda"
  int device = -1;                          // cuda: -1 = local rank modulo devices
  bool tf32 = false;                        // cuda: fp32 GEMMs on TF32 tensor cores
  int64_t checkpoint_every = 0;             // 0: only at the end
  int keep_checkpoints = 3;
  std::string checkpoint_dir;               // empty: <run_dir>/checkpoints
  std::string tensorboard_dir;              // empty: no TensorBoard event file
  bool resume = false;
  bool overwrite = false;  // remove another run's checkpoints first
  int checkpoint_failures_allowed = 0;
  double collective_timeout_s = 300;        // the collective watchdog (comm/watchdog.h); 0: off
  std::string init_from;                    // fine-tuning source
  std::vector<std::regex> init_skip;
};

// Checks the flags that need no file (fails with a message naming the flag).
void validate_flags();
// The full configuration. Model shapes come from the training set's header;
// the evaluation set must match it. `world` ranks share each global batch.
// Only this one applies --remat (trainer.model.remat).
TrainConfig train_config_from_flags(int world = 1);
// The same from already inspected files (eval_info empty: no evaluation set);
// vmoe_eval passes the shape a checkpoint was trained on. Call
// validate_flags() first. Ignores --remat (evaluation is forward only).
TrainConfig config_from_flags(const DatasetInfo& train_info, const DatasetInfo& eval_info,
                              int world = 1);
// The flags as a flagfile (for the run directory).
std::string flags_as_flagfile();
// "name=value" lines of what defines the parameters' shapes, and the
// optimiser state's meaning (kind, global batch, seed); checkpoints store
// both and resuming compares them.
std::string model_flags(const TrainConfig& c);
std::string optimizer_flags(const TrainConfig& c);

}  // namespace vmoe
