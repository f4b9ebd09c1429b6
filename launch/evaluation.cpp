#include "launch/evaluation.h"

#include "core/check.h"
#include "datasets/loader.h"
#include "launch/metrics_log.h"
#include "launch/routing_analysis.h"

namespace vmoe {

EvalSource eval_source_for(const TrainConfig& c, const std::string& path) {
  const ImageShape& image = c.trainer.model.image;
  return {.path = path,
          .batch_size = c.eval_batch_size,
          .prefetch = c.prefetch,
          .image_height = image.height,
          .image_width = image.width,
          .threads = c.loader_threads,
          .crop_fraction = c.eval_crop_fraction,
          .max_open_shards = c.max_open_shards};
}

LoaderOptions eval_loader_options(const EvalSource& source, int rank, int world,
                                  std::vector<int64_t> rows) {
  return {.path = source.path,
          .batch_size = source.batch_size,
          .rank = rank,
          .world = world,
          .training = false,
          .prefetch = source.prefetch,
          .rows = std::move(rows),
          .image_height = source.image_height,
          .image_width = source.image_width,
          .eval_crop_fraction = source.crop_fraction,
          .threads = source.threads,
          .max_open_shards = source.max_open_shards};
}

EvalResult evaluate_dataset(Trainer& trainer, const EvalSource& source,
                            RoutingAnalysis* routing) {
  Loader loader(eval_loader_options(source, trainer.rank(), trainer.world()));
  EvalResult total;
  Batch batch;
  while (loader.next(batch)) {
    const LossTargets targets{batch.rows, batch.labels.empty() ? nullptr : batch.labels.data(),
                              batch.multi_hot.empty() ? nullptr : batch.multi_hot.data(),
                              batch.mask.data()};
    const int32_t* superclass = batch.superclass.empty() ? nullptr : batch.superclass.data();
    total += trainer.evaluate(batch.images.data(), targets, superclass);
    if (routing != nullptr) {
      routing->add(trainer.backend(), targets.labels, batch.mask.data(), batch.rows, superclass);
    }
  }
  trainer.reduce_over_ranks(total);
  if (routing != nullptr && trainer.groups() != nullptr) routing->reduce(trainer.groups()->host());
  return total;
}

std::vector<SweepPoint> capacity_sweep(Trainer& trainer, const EvalSource& source,
                                       const std::vector<double>& ratios) {
  MoeConfig& moe = trainer.moe();
  const MoeConfig saved = moe;
  std::vector<SweepPoint> points;
  for (bool bpr : {true, false}) {
    for (double ratio : ratios) {
      moe.eval_capacity_ratio = ratio;
      moe.eval_batch_priority = bpr;
      points.push_back({ratio, bpr, evaluate_dataset(trainer, source)});
    }
  }
  moe = saved;
  return points;
}

std::string sweep_json(const std::vector<SweepPoint>& points) {
  std::string out = "{\"points\": [\n";
  for (size_t i = 0; i < points.size(); ++i) {
    const SweepPoint& p = points[i];
    out += "  " + JsonRecord()
                      .add("capacity_ratio", p.capacity_ratio)
                      .add("batch_priority", static_cast<int64_t>(p.batch_priority))
                      .add("precision_at_1", p.result.precision_at_1())
                      .add("loss", p.result.mean_loss())
                      .add("dropped", p.result.dropped_fraction())
                      .str();
    out += i + 1 < points.size() ? ",\n" : "\n";
  }
  return out + "]}\n";
}

std::string confusion_csv(const std::vector<int64_t>& confusion,
                          const std::vector<std::string>& class_names) {
  const size_t k = class_names.size();
  VMOE_ASSERT(confusion.size() == k * k);
  std::string out = "label\\prediction";
  for (const std::string& n : class_names) {
    out += ',';
    out += csv_field(n);
  }
  out += "\n";
  for (size_t i = 0; i < k; ++i) {
    out += csv_field(class_names[i]);
    for (size_t j = 0; j < k; ++j) {
      out += ',';
      out += std::to_string(confusion[i * k + j]);
    }
    out += "\n";
  }
  return out;
}

}  // namespace vmoe
