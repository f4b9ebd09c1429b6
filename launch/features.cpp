#include "launch/features.h"

#include <algorithm>

#include "core/check.h"
#include "datasets/loader.h"
#include "launch/evaluation.h"

namespace vmoe {

FeatureSet extract_features(Trainer& trainer, const EvalSource& source,
                            const std::vector<int64_t>& rows) {
  const int world = trainer.world();
  Loader loader(eval_loader_options(source, trainer.rank(), world, rows));
  VMOE_CHECK(!loader.info().multi_label, source.path,
             ": few-shot evaluation needs single-label data (this file is multi-label)");
  const int64_t total = rows.empty() ? loader.info().size : static_cast<int64_t>(rows.size());
  FeatureSet out;
  out.dim = trainer.options().model.feature_size();
  out.values.resize(static_cast<size_t>(total * out.dim));
  out.labels.resize(static_cast<size_t>(total));
  const int64_t b = source.batch_size / world;
  std::vector<float> mine(static_cast<size_t>(b * out.dim));
  std::vector<float> all(static_cast<size_t>(source.batch_size * out.dim));
  std::vector<int32_t> all_labels(static_cast<size_t>(source.batch_size));
  Batch batch;
  while (loader.next(batch)) {
    trainer.features(batch.images.data(), batch.rows, batch.mask.data(), mine.data());
    if (world > 1) {
      Communicator& comm = trainer.groups()->host();
      comm.all_gather(mine.data(), all.data(), static_cast<int64_t>(mine.size() * sizeof(float)));
      comm.all_gather(batch.labels.data(), all_labels.data(), b * static_cast<int64_t>(sizeof(int32_t)));
    } else {
      all = mine;
      all_labels = batch.labels;
    }
    // Global position of row 0 of this batch; padding rows lie past `total`.
    const int64_t first = batch.step * source.batch_size;
    const int64_t count = std::min<int64_t>(source.batch_size, total - first);
    std::copy_n(all.data(), count * out.dim, out.values.data() + first * out.dim);
    std::copy_n(all_labels.data(), count, out.labels.data() + first);
  }
  return out;
}

}  // namespace vmoe
