// Evaluation of a trainer's model on a dataset file: precision@1, loss,
// dropped expert choices, router super-class accuracy and the confusion
// matrix; and the capacity sweep (accuracy and drops against the capacity
// ratio, with and without batch-priority routing).
#pragma once

#include <string>
#include <vector>

#include "datasets/loader.h"
#include "launch/train_config.h"
#include "launch/trainer.h"

namespace vmoe {

struct EvalSource {
  std::string path;
  int64_t batch_size = 0;  // global
  int prefetch = 2;
  // Encoded datasets: resized and centrally cropped to the model's resolution.
  int image_height = 0, image_width = 0;  // 0 = the dataset's
  int threads = 1;
  float crop_fraction = 0.875f;
  int max_open_shards = 16;
};

// `path` read the way run configuration `c` says (batch, prefetch, decode
// threads, crop), at the model's resolution.
EvalSource eval_source_for(const TrainConfig& c, const std::string& path);

// The loader options of one rank's share of `source`, in file order (or `rows`).
LoaderOptions eval_loader_options(const EvalSource& source, int rank, int world,
                                  std::vector<int64_t> rows = {});

class RoutingAnalysis;

// Each rank evaluates its share of every global batch; the result is summed
// over ranks, so every example counts exactly once. With `routing`, also
// accumulates (and reduces) the routing analysis of every batch.
EvalResult evaluate_dataset(Trainer& trainer, const EvalSource& source,
                            RoutingAnalysis* routing = nullptr);

struct SweepPoint {
  double capacity_ratio = 0;
  bool batch_priority = false;
  EvalResult result;
};

// Evaluates at every ratio, BPR and vanilla; restores the trainer's settings.
std::vector<SweepPoint> capacity_sweep(Trainer& trainer, const EvalSource& source,
                                       const std::vector<double>& ratios);
// {"points": [{"capacity_ratio", "batch_priority", "precision_at_1", "loss", "dropped"}...]}
std::string sweep_json(const std::vector<SweepPoint>& points);
// The confusion matrix as CSV, rows = labels, columns = predictions, with a header of class names.
std::string confusion_csv(const std::vector<int64_t>& confusion,
                          const std::vector<std::string>& class_names);

}  // namespace vmoe
