// Pre-logit features of a dataset (the few-shot evaluation's input),
// computed sharded over the trainer's ranks: each rank runs its rows of every
// global batch, then the batch's features are gathered on every rank. Routing
// groups are whole images of one rank, so the features do not depend on the
// number of ranks.
#pragma once

#include <cstdint>
#include <vector>

#include "launch/evaluation.h"
#include "launch/trainer.h"

namespace vmoe {

struct FeatureSet {
  int64_t dim = 0;
  std::vector<float> values;    // [rows, dim]
  std::vector<int32_t> labels;  // [rows]
  int64_t rows() const { return static_cast<int64_t>(labels.size()); }
};

// Features of `rows` of source.path, in that order (empty: every row in file
// order). Collective over the trainer's world; every rank gets all of them.
// The dataset must be single-label.
FeatureSet extract_features(Trainer& trainer, const EvalSource& source,
                            const std::vector<int64_t>& rows = {});

}  // namespace vmoe
