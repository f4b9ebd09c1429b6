// vmoe_eval: evaluates a checkpoint — precision@1 and loss on datasets, the
// capacity sweep, the routing analysis, few-shot linear transfer — under
// mpirun like training. Writes <out_dir>/eval.json, sweep.json, fewshot.json
// and routing/<dataset>/*.csv.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "checkpoints/checkpoint.h"
#include "comm/mpi_communicator.h"
#include "comm/process_groups.h"
#include "comm/watchdog.h"
#include "core/check.h"
#include "datasets/dataset_info.h"
#include "launch/compute.h"
#include "launch/eval_config.h"
#include "launch/evaluation.h"
#include "launch/features.h"
#include "launch/fewshot.h"
#include "launch/metrics_log.h"
#include "launch/mpi_program.h"
#include "launch/routing_analysis.h"
#include "launch/tensorboard.h"
#include "launch/trainer.h"

namespace vmoe {
namespace {

// Rank 0 prints; every rank computes.
template <typename... A>
void say(Communicator& world, const char* format, A... args) {
  if (world.rank() != 0) return;
  std::printf(format, args...);
  std::fflush(stdout);
}

void check_matches_model(const DatasetInfo& d, const ViTConfig& m, bool same_classes) {
  // Encoded images are cropped and resized to the model's size as they load.
  VMOE_CHECK((d.encoded || (d.height == m.image.height && d.width == m.image.width)) &&
                 d.channels == m.image.channels,
             d.path, " has images of ", d.height, "x", d.width, "x", d.channels,
             " but the model takes ", m.image.height, "x", m.image.width, "x", m.image.channels,
             " (re-import it with vmoe_import --image_size=", m.image.height, "x", m.image.width,
             " --channels=", m.image.channels, ")");
  VMOE_CHECK(!same_classes || d.num_classes == m.num_classes, d.path, " has ", d.num_classes,
             " classes but the model's head has ", m.num_classes);
}

std::string dropped_text(const EvalResult& r) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "  dropped %.2f%%", 100 * r.dropped_fraction());
  return buf;
}

std::vector<int32_t> read_labels(const DatasetInfo& d) {
  VMOE_CHECK(!d.multi_label, d.path, ": few-shot evaluation needs single-label data");
  return read_all_labels(d);
}

struct ShotResult {
  int shots = 0;
  double l2 = 0;
  std::vector<double> per_seed;
  double mean() const {
    double s = 0;
    for (double v : per_seed) s += v;
    return s / static_cast<double>(per_seed.size());
  }
  double std() const {
    const double m = mean();
    double s = 0;
    for (double v : per_seed) s += (v - m) * (v - m);
    return std::sqrt(s / static_cast<double>(per_seed.size()));
  }
};

// One few-shot target: features of every selected training example (all
// seeds at once) and of the test split, then one ridge fit per (seed, shots).
std::string fewshot_target(Trainer& trainer, const EvalConfig& c, const FewShotTarget& t,
                           Communicator& world) {
  const auto start = Clock::now();
  const FewShotSettings& f = c.fewshot_settings;
  const DatasetInfo train = inspect_dataset(t.train), test = inspect_dataset(t.test);
  for (const DatasetInfo* d : {&train, &test}) check_matches_model(*d, trainer.options().model, false);
  VMOE_CHECK(train.num_classes == test.num_classes, t.train, " has ", train.num_classes,
             " classes but ", t.test, " has ", test.num_classes);
  const int64_t classes = train.num_classes;
  const int max_shots = *std::max_element(f.shots.begin(), f.shots.end());
  const std::vector<int32_t> labels = read_labels(train);
  std::vector<std::vector<int64_t>> selections;
  std::vector<int64_t> rows;
  for (int seed = 0; seed < f.seeds; ++seed) {
    selections.push_back(fewshot_rows(labels, classes, max_shots, static_cast<uint64_t>(seed)));
    rows.insert(rows.end(), selections.back().begin(), selections.back().end());
  }
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  const EvalSource train_source = eval_source_for(c.run, t.train);
  const EvalSource test_source = eval_source_for(c.run, t.test);
  const FeatureSet pool = extract_features(trainer, train_source, rows);
  const FeatureSet test_features = extract_features(trainer, test_source);
  const int64_t dim = pool.dim;

  std::vector<ShotResult> results;
  for (int shots : f.shots)
    for (double l2 : f.l2) results.push_back({shots, l2, {}});
  std::vector<float> x;
  std::vector<int32_t> y;
  for (int seed = 0; seed < f.seeds; ++seed) {
    const std::vector<int64_t>& selection = selections[static_cast<size_t>(seed)];
    for (int shots : f.shots) {
      x.clear();
      y.clear();
      for (int64_t cls = 0; cls < classes; ++cls) {
        for (int s = 0; s < shots; ++s) {
          const int64_t row = selection[static_cast<size_t>(cls * max_shots + s)];
          const int64_t at = std::lower_bound(rows.begin(), rows.end(), row) - rows.begin();
          x.insert(x.end(), pool.values.begin() + at * dim, pool.values.begin() + (at + 1) * dim);
          y.push_back(pool.labels[static_cast<size_t>(at)]);
        }
      }
      const std::vector<double> acc =
          fewshot_accuracy(x, y, test_features.values, test_features.labels, dim, classes, f.l2);
      for (ShotResult& r : results)
        if (r.shots == shots)
          r.per_seed.push_back(acc[static_cast<size_t>(std::find(f.l2.begin(), f.l2.end(), r.l2) - f.l2.begin())]);
    }
  }
  // The l2 with the best accuracy averaged over shots (meaningful for a sweep).
  double best_l2 = f.l2.front(), best = -1;
  for (double l2 : f.l2) {
    double sum = 0;
    for (const ShotResult& r : results) sum += r.l2 == l2 ? r.mean() : 0.0;
    if (sum > best) best = sum, best_l2 = l2;
  }
  say(world, "few-shot %s (%lld classes, %lld test images, %d seeds, %.1fs):\n", t.name.c_str(),
      static_cast<long long>(classes), static_cast<long long>(test.size), f.seeds,
      seconds_since(start));
  for (const ShotResult& r : results) {
    if (r.l2 != best_l2) continue;
    say(world, "  %3d-shot  %.4f ± %.4f  (l2 %g)\n", r.shots, r.mean(), r.std(), r.l2);
  }
  std::string list;
  for (const ShotResult& r : results) {
    list += (list.empty() ? "\n    " : ",\n    ") + JsonRecord()
                                                    .add("shots", static_cast<int64_t>(r.shots))
                                                    .add("l2", r.l2)
                                                    .add("mean", r.mean())
                                                    .add("std", r.std())
                                                    .add_json("per_seed", json_array(r.per_seed))
                                                    .str();
  }
  return JsonRecord()
      .add("name", t.name)
      .add("train", t.train)
      .add("test", t.test)
      .add("classes", classes)
      .add("test_examples", test.size)
      .add("best_l2", best_l2)
      .add_json("results", "[" + list + "]")
      .str();
}

// Loads c.checkpoint, or, when some rank cannot read it completely (a damaged
// file in a folder), the newest of c.fallbacks that every rank can; a single
// file has no fallback. Collective.
void load_with_fallback(EvalConfig& c, Trainer& trainer, MpiCommunicator& host) {
  std::vector<std::string> candidates = {c.checkpoint};
  candidates.insert(candidates.end(), c.fallbacks.begin(), c.fallbacks.end());
  for (size_t i = 0; i < candidates.size(); ++i) {
    std::string error;
    try {
      if (i > 0) {
        const CheckpointState state = read_checkpoint_state(candidates[i]);
        VMOE_CHECK(state.model_flags == c.state.model_flags, candidates[i],
                   " is a checkpoint of another model");
        c.state = state;
      }
      load_checkpoint(candidates[i], trainer.params(), nullptr, {.optimizer = false});
    } catch (const std::exception& e) {
      error = e.what();
    }
    const int64_t failed = all_reduce_value(host, int64_t{error.empty() ? 0 : 1}, ReduceOp::kSum);
    if (failed == 0) {
      c.checkpoint = candidates[i];
      return;
    }
    if (i + 1 == candidates.size()) agree_on(host, error.empty() ? "" : error);
    say(host, "warning: cannot read %s: %s; trying the previous checkpoint\n",
        candidates[i].c_str(), error.empty() ? "another rank failed" : error.c_str());
  }
}

int run(MpiCommunicator& world) {
  const auto start = Clock::now();
  EvalConfig c = agreed(world, [&] { return eval_config_from_flags(world.size()); });
  const WatchdogSession watchdog(c.run.collective_timeout_s, world.rank(), world.size(),
                                 c.out_dir + "/.heartbeat", "vmoe_eval");
  const MoeConfig& moe = c.run.trainer.moe;
  Compute compute(c.run.backend, c.run.device, world);
  Backend& backend = compute.backend();
  backend.set_tf32(c.run.tf32);
  ProcessGroups groups = compute.make_groups(moe.enabled() ? moe.num_experts : 0,
                                             c.run.expert_parallel, c.run.expert_exchange);
  Trainer trainer(backend, c.run.trainer, &groups);
  for (const std::string& w : c.warnings) say(world, "warning: %s\n", w.c_str());
  load_with_fallback(c, trainer, compute.host());
  if (world.rank() == 0) std::filesystem::create_directories(c.out_dir);
  say(world, "vmoe_eval: %s (step %lld) on %d rank(s) -> %s\n", c.checkpoint.c_str(),
      static_cast<long long>(c.state.step), world.size(), c.out_dir.c_str());
  if (moe.enabled()) {
    say(world, "routing at evaluation: k=%d, capacity ratio %.2f, %s\n", moe.eval_num_selected,
        moe.eval_capacity_ratio, moe.eval_batch_priority ? "batch-priority" : "vanilla");
  }

  // Rank 0's TensorBoard scalars: vmoe_eval/<dataset>/<metric> at the checkpoint's step.
  std::unique_ptr<TensorBoardWriter> tensorboard;
  if (world.rank() == 0 && !c.run.tensorboard_dir.empty())
    tensorboard = std::make_unique<TensorBoardWriter>(c.run.tensorboard_dir);
  std::string datasets;
  for (const std::string& path : c.eval_data) {
    const DatasetInfo info = inspect_dataset(path);
    check_matches_model(info, trainer.options().model, true);
    const auto t = Clock::now();
    const EvalSource source = eval_source_for(c.run, path);
    std::unique_ptr<RoutingAnalysis> routing;
    if (moe.enabled() && c.routing_analysis)
      routing = std::make_unique<RoutingAnalysis>(trainer.model(), moe.group_size, info.num_classes);
    const EvalResult r = evaluate_dataset(trainer, source, routing.get());
    const std::string name = dataset_name(path);
    say(world, "eval %s: precision@1 %.4f  loss %.4f%s  (%lld images, %.1fs)\n", name.c_str(),
        r.precision_at_1(), r.mean_loss(),
        moe.enabled() ? dropped_text(r).c_str() : "",
        static_cast<long long>(r.count), seconds_since(t));
    JsonRecord record;
    record.add("name", name).add("path", path).add("precision_at_1", r.precision_at_1())
        .add("loss", r.mean_loss()).add("examples", r.count);
    if (moe.enabled()) record.add("dropped", r.dropped_fraction());
    datasets += (datasets.empty() ? "\n  " : ",\n  ") + record.str();
    if (tensorboard) {
      const std::string tag = "vmoe_eval/" + name + "/";
      std::vector<std::pair<std::string, double>> values = {
          {tag + "precision_at_1", r.precision_at_1()}, {tag + "loss", r.mean_loss()}};
      if (moe.enabled()) values.emplace_back(tag + "dropped", r.dropped_fraction());
      tensorboard->scalars(c.state.step, values);
    }
    if (routing && world.rank() == 0) {
      routing->write(c.out_dir + "/routing/" + name, info.class_names);
      say(world, "  routing analysis: %s/routing/%s/\n", c.out_dir.c_str(), name.c_str());
    }
  }
  if (!c.run.eval_capacity_sweep.empty() && !c.eval_data.empty()) {
    const EvalSource source = eval_source_for(c.run, c.eval_data.front());
    const std::vector<SweepPoint> sweep = capacity_sweep(trainer, source, c.run.eval_capacity_sweep);
    say(world, "capacity sweep on %s (precision@1 / dropped choices):\n  ratio     BPR               vanilla\n",
        dataset_name(source.path).c_str());
    const size_t n = c.run.eval_capacity_sweep.size();
    for (size_t i = 0; i < n; ++i) {
      const EvalResult& b = sweep[i].result;
      const EvalResult& v = sweep[n + i].result;
      say(world, "  %5.2f   %.4f / %5.1f%%   %.4f / %5.1f%%\n", sweep[i].capacity_ratio,
          b.precision_at_1(), 100 * b.dropped_fraction(), v.precision_at_1(),
          100 * v.dropped_fraction());
    }
    if (world.rank() == 0) write_file_atomically(c.out_dir + "/sweep.json", sweep_json(sweep));
  }
  if (!c.fewshot.empty()) {
    std::string targets;
    for (const FewShotTarget& t : c.fewshot)
      targets += (targets.empty() ? "\n  " : ",\n  ") + fewshot_target(trainer, c, t, world);
    const FewShotSettings& f = c.fewshot_settings;
    const std::vector<double> shots(f.shots.begin(), f.shots.end());
    const std::string json = JsonRecord()
                                 .add("checkpoint", c.checkpoint)
                                 .add("step", c.state.step)
                                 .add_json("shots", json_array(shots))
                                 .add("seeds", static_cast<int64_t>(f.seeds))
                                 .add_json("l2", json_array(f.l2))
                                 .add_json("datasets", "[" + targets + "\n]")
                                 .str();
    if (world.rank() == 0) write_file_atomically(c.out_dir + "/fewshot.json", json + "\n");
  }
  if (world.rank() == 0 && !c.eval_data.empty()) {
    write_file_atomically(c.out_dir + "/eval.json",
                          JsonRecord()
                                  .add("checkpoint", c.checkpoint)
                                  .add("step", c.state.step)
                                  .add("ranks", static_cast<int64_t>(world.size()))
                                  .add_json("datasets", "[" + datasets + "\n]")
                                  .str() +
                              "\n");
  }
  say(world, "done in %.1fs: %s\n", seconds_since(start), c.out_dir.c_str());
  return 0;
}

}  // namespace
}  // namespace vmoe

int main(int argc, char** argv) {
  return vmoe::run_mpi_program(
      argc, argv,
      {.name = "vmoe_eval",
       .usage = "evaluates a checkpoint: precision@1 and loss, the capacity sweep, the routing "
                "analysis and few-shot linear transfer.\nUsage: vmoe_eval "
                "--checkpoint=RUN_DIR|FILE [--eval_data=a.h5,b.h5] "
                "[--eval_capacity_sweep=0.5,1,1.5] [--fewshot=data/x,...]\nAlso accepted: "
                "--eval_batch_size, --eval_capacity_ratio, --eval_num_selected, "
                "--eval_batch_priority, --expert_parallel, --expert_exchange, --prefetch, "
                "--backend, --device, "
                "--precision, --tf32, --tensorboard_dir (per-dataset scalars at the "
                "checkpoint's step) (see vmoe_train --help).",
       .help_source = "eval_config",
       .run = vmoe::run,
       .matrix_products = true});
}
