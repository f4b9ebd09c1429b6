// vmoe_train: trains a ViT on an HDF5 dataset, logging to a run directory.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>

#include "comm/mpi_communicator.h"
#include "comm/process_groups.h"
#include "comm/watchdog.h"
#include "core/check.h"
#include "core/cpu/blas_kernels.h"
#include "core/cpu/cpu_isa.h"
#include "datasets/loader.h"
#include "launch/compute.h"
#include "launch/evaluation.h"
#include "launch/metrics_log.h"
#include "launch/mpi_program.h"
#include "launch/preflight.h"
#include "launch/tensorboard.h"
#include "launch/train_checkpoints.h"
#include "launch/train_config.h"
#include "launch/trainer.h"

namespace vmoe {
namespace {

std::string default_run_dir() {
  char buf[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(buf, sizeof buf, "runs/%Y%m%d-%H%M%S", std::localtime(&now));
  return buf;
}

std::string format_duration(double s) {
  char buf[32];
  const int64_t t = static_cast<int64_t>(s + 0.5);
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  return buf;
}

LossTargets targets_of(const Batch& b) {
  return {b.rows, b.labels.empty() ? nullptr : b.labels.data(),
          b.multi_hot.empty() ? nullptr : b.multi_hot.data(), b.mask.data(),
          b.soft_targets.empty() ? nullptr : b.soft_targets.data()};
}

// "aux 0.0123  drop 1.2%" from the routing metrics (empty for a dense model).
std::string routing_summary(const std::vector<Metric>& metrics, double aux) {
  double dropped = 0;
  int layers = 0;
  for (const Metric& m : metrics) {
    if (m.name.size() > 8 && m.name.compare(m.name.size() - 8, 8, "/dropped") == 0) {
      dropped += m.value;
      ++layers;
    }
  }
  if (layers == 0) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "  aux %.4f  drop %.1f%%", aux, 100.0 * dropped / layers);
  return buf;
}

// Rank 0 speaks for the job: it prints and writes the run directory.
class Reporter {
 public:
  Reporter(bool active, const std::string& run_dir, const std::string& tensorboard_dir)
      : active_(active) {
    if (!active_) return;
    std::filesystem::create_directories(run_dir);
    log_ = std::make_unique<MetricsLog>(run_dir + "/metrics.jsonl");
    if (!tensorboard_dir.empty())
      tensorboard_ = std::make_unique<TensorBoardWriter>(tensorboard_dir);
  }
  bool active() const { return active_; }
  template <typename... A>
  void print(const char* format, A... args) {
    if (!active_) return;
    std::printf(format, args...);
    std::fflush(stdout);
  }
  void write(const JsonRecord& record) {
    if (!active_) return;
    log_->write(record);
    if (!tensorboard_) return;
    std::string type = "metrics";  // the record's "type", unquoted, prefixes its tags
    for (const auto& [key, json] : record.fields())
      if (key == "type" && json.size() >= 2) type = json.substr(1, json.size() - 2);
    int64_t step = -1;
    const auto values = numeric_fields(record.fields(), type, &step);
    if (step >= 0) tensorboard_->scalars(step, values);
  }
  void drop_after(int64_t step) {
    if (active_) log_->drop_after(step);
  }

 private:
  bool active_;
  std::unique_ptr<MetricsLog> log_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

int run(MpiCommunicator& world) {
  TrainConfig c = agreed(world, [&] { return train_config_from_flags(world.size()); });
  const DatasetInfo& train_info = c.train_info;
  if (c.run_dir.empty()) c.run_dir = default_run_dir();
  // Every rank agrees on the run directory (the default is a time stamp).
  std::vector<char> dir(4096, '\0');
  c.run_dir.copy(dir.data(), dir.size() - 1);
  world.broadcast(dir.data(), static_cast<int64_t>(dir.size()), 0);
  c.run_dir = dir.data();
  Reporter out(world.rank() == 0, c.run_dir, c.tensorboard_dir);
  const WatchdogSession watchdog(c.collective_timeout_s, world.rank(), world.size(),
                                 c.run_dir + "/.heartbeat", "vmoe_train");

  Compute compute(c.backend, c.device, world);
  Backend& backend = compute.backend();
  backend.set_tf32(c.tf32);
  check_memory(c, backend, world);  // before the model allocates anything
  ProcessGroups groups =
      compute.make_groups(c.trainer.moe.enabled() ? c.trainer.moe.num_experts : 0,
                          c.expert_parallel, c.expert_exchange);
  Trainer trainer(backend, c.trainer, &groups);
  CheckpointDir checkpoints(c.checkpoint_dir.empty() ? c.run_dir + "/checkpoints" : c.checkpoint_dir,
                            c.keep_checkpoints);
  const Say say = [&](const std::string& text) { out.print("%s", text.c_str()); };
  MpiCommunicator& host = compute.host();
  // Another run's checkpoints in the folder would be pruned as if they were
  // this run's (or this run's as if they were old): refuse, unless told.
  if (c.overwrite) {
    checkpoints.remove_all(host);
  } else if (!c.resume) {
    refuse_foreign_checkpoints(checkpoints, host);
  }
  checkpoints.check_writable(host,
                             planned_checkpoint_bytes(trainer.params(), &trainer.optimizer()));
  // Only now, past the checks: a refused run leaves the folder's files alone.
  if (out.active()) write_file_atomically(c.run_dir + "/flags.txt", flags_as_flagfile());
  int64_t start_step = 0;
  if (c.resume) start_step = resume(checkpoints, c, trainer, groups, say);
  // The records of steps that run (again) go; a new run starts a new log.
  out.drop_after(c.resume ? start_step : -1);
  if (!c.init_from.empty()) init_from(c, trainer, say);
  // Tests: abort mid-write after this many datasets, as a crash would.
  const char* abort_hook = std::getenv("VMOE_TEST_ABORT_CHECKPOINT_AFTER");
  const int abort_after = abort_hook != nullptr ? std::atoi(abort_hook) : -1;
  int checkpoint_failures = 0;
  auto save = [&](int64_t step) {
    const auto t = Clock::now();
    std::string path;
    try {
      const CollectiveScope watched("a checkpoint write (collective MPI-IO)", 10);
      path = checkpoints.save(trainer.params(), &trainer.optimizer(),
                              checkpoint_state(c, trainer, groups), groups, abort_after);
    } catch (const CheckpointWriteError& e) {
      // Every rank is here: the write failed everywhere, earlier checkpoints are intact.
      if (++checkpoint_failures > c.checkpoint_failures_allowed) throw;
      out.print("warning: %s (failure %d of --checkpoint_failures_allowed=%d; training goes on)\n",
                e.what(), checkpoint_failures, c.checkpoint_failures_allowed);
      out.write(JsonRecord()
                    .add("type", std::string("checkpoint_failed"))
                    .add("step", step)
                    .add("error", std::string(e.what())));
      return;
    }
    const double seconds = seconds_since(t);
    out.print("checkpoint: %s (%.2fs)\n", path.c_str(), seconds);
    out.write(JsonRecord()
                  .add("type", std::string("checkpoint"))
                  .add("step", step)
                  .add("seconds", seconds)
                  .add("path", path));
  };
  const ViTConfig& m = c.trainer.model;
  out.print("vmoe_train: %s (%lld images %dx%dx%d, %d classes) -> %s\n", c.train_data.c_str(),
              static_cast<long long>(train_info.size), m.image.height, m.image.width,
              m.image.channels, m.num_classes, c.run_dir.c_str());
  const MoeConfig& moe = c.trainer.moe;
  // Each expert counted once, wherever it lives.
  const int64_t params =
      trainer.params().num_parameters(Region::kDense) +
      (moe.enabled() ? trainer.params().num_parameters(Region::kExpert) * moe.num_experts /
                           groups.placement().local_experts
                     : 0);
  const int pad = backend.attention_pad_to();
  const std::string attention =
      pad > 0 ? "head-major (tokens padded to a multiple of " + std::to_string(pad) + ")"
              : "strided";
  out.print(
      "model: %s D=%d L=%d heads=%d mlp=%d patch=%d tokens=%d, %lld parameters, "
      "%.1f MFLOP/image forward; %lld steps of %lld images, backend %s, attention %s\n",
      moe.enabled() ? (moe.routing == Routing::kToken ? "V-MoE" : "Mobile V-MoE") : "ViT",
      m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim, m.patch_size, m.tokens(),
      static_cast<long long>(params), trainer.forward_flops_per_image(false) / 1e6,
      static_cast<long long>(c.total_steps), static_cast<long long>(c.trainer.global_batch),
      backend.name().c_str(), attention.c_str());
  if (moe.enabled()) {
    out.print("experts: %s routing, blocks %s, E=%d k=%d (eval k=%d), groups of %d images, "
              "capacity ratio %.2f (eval %.2f), %s\n",
                moe.routing == Routing::kToken ? "token" : "image",
                format_moe_layers(moe.layers).c_str(), moe.num_experts, moe.num_selected,
                moe.eval_num_selected, moe.group_size, moe.capacity_ratio, moe.eval_capacity_ratio,
                moe.batch_priority ? "batch-priority routing" : "vanilla routing");
  }
  const ExpertPlacement& place = groups.placement();
  out.print("ranks: %d, %s\n", world.size(),
            moe.enabled()
                ? ("expert-parallel groups of " + std::to_string(place.ep_size) + " ranks, " +
                   std::to_string(place.local_experts) + " expert(s) per rank, " +
                   std::to_string(place.world_replicas) + " cop" +
                   (place.world_replicas == 1 ? "y" : "ies") + " of each" +
                   (place.ep_size == 1                        ? ""
                    : groups.expert_peer_buffers() != nullptr ? ", exchanged in shared memory"
                                                              : ", exchanged by all-to-all"))
                      .c_str()
                : "data parallel");
  if (backend.name() == "cpu") {
    out.print("cpu: element-wise loops %s, matrix products %s\n", cpu_loops_isa(),
              blas_kernels_summary().c_str());
    if (const std::string w = blas_kernels_warning(); !w.empty()) out.print("%s\n", w.c_str());
  }

  Loader loader({.path = c.train_data,
                 .batch_size = c.trainer.global_batch,
                 .rank = world.rank(),
                 .world = world.size(),
                 .training = true,
                 .seed = c.trainer.seed,
                 .crop_padding = c.crop_padding,
                 .flip = c.flip,
                 .prefetch = c.prefetch,
                 .start_step = start_step,
                 .image_height = m.image.height,
                 .image_width = m.image.width,
                 .min_area = c.min_area,
                 .threads = c.loader_threads,
                 .max_open_shards = c.max_open_shards,
                 .mixup_alpha = c.mixup_alpha,
                 .uint8_images = c.uint8_pixels,
                 .pixel_memory = c.uint8_pixels ? &backend : nullptr});
  const double steps_per_epoch = static_cast<double>(train_info.size) / c.trainer.global_batch;
  const auto start = Clock::now();
  auto window_start = start;
  Batch batch;
  const EvalSource eval_source = eval_source_for(c, c.eval_data);
  const bool superclass_eval = moe.routing == Routing::kImage && c.eval_info.has_superclass;
  auto run_eval = [&](int64_t step) {
    if (c.eval_data.empty()) return EvalResult{};
    const auto t = Clock::now();
    const EvalResult r = evaluate_dataset(trainer, eval_source);
    std::string extra;
    if (moe.enabled()) extra += "  dropped " + std::to_string(100.0 * r.dropped_fraction()) + "%";
    if (superclass_eval)
      extra += "  router super-class accuracy " + std::to_string(r.superclass_accuracy());
    out.print("eval  step %lld: precision@1 %.4f  loss %.4f%s  (%lld images, %.1fs)\n",
              static_cast<long long>(step), r.precision_at_1(), r.mean_loss(), extra.c_str(),
              static_cast<long long>(r.count), seconds_since(t));
    JsonRecord record;
    record.add("type", std::string("eval"))
        .add("step", step)
        .add("precision_at_1", r.precision_at_1())
        .add("loss", r.mean_loss())
        .add("examples", r.count);
    if (moe.enabled()) record.add("dropped", r.dropped_fraction());
    if (superclass_eval) record.add("router_superclass_accuracy", r.superclass_accuracy());
    out.write(record);
    return r;
  };

  for (int64_t step = start_step + 1; step <= c.total_steps; ++step) {
    CollectiveWatchdog::instance().set_step(step);
    loader.next(batch);
    const int32_t* superclass = batch.superclass.empty() ? nullptr : batch.superclass.data();
    if (c.uint8_pixels) {
      trainer.stage_pixels(batch.pixels.data(), targets_of(batch), superclass, batch.mixup_lambda);
    } else {
      trainer.stage(batch.images.data(), targets_of(batch), superclass);
    }
    const StepResult r = trainer.train_staged();
    // Metrics stay on the device between the steps that log (launch/trainer.h).
    if (step % c.log_every == 0 || step == c.total_steps) {
      const TrainMetrics m = trainer.read_metrics();
      VMOE_CHECK(std::isfinite(m.loss) && std::isfinite(m.grad_norm), "training diverged by step ",
                 step, ": loss ", m.loss, ", gradient norm ", m.grad_norm,
                 " (try a lower --learning_rate or --grad_clip_norm)");
      const double dt = seconds_since(window_start);
      const double ips = static_cast<double>(m.steps * c.trainer.global_batch) / dt;
      const double elapsed = seconds_since(start);
      const double eta = elapsed / (step - start_step) * (c.total_steps - step);
      const double epoch = step / steps_per_epoch;
      out.print("step %6lld/%lld  epoch %6.2f  loss %.4f%s  lr %.2e  %7.1f img/s  ETA %s\n",
                static_cast<long long>(step), static_cast<long long>(c.total_steps), epoch, m.loss,
                routing_summary(m.routing, m.aux_loss).c_str(), r.lr, ips,
                format_duration(eta).c_str());
      JsonRecord record;
      record.add("type", std::string("train"))
          .add("step", step)
          .add("epoch", epoch)
          .add("loss", m.loss)
          .add("aux_loss", m.aux_loss)
          .add("grad_norm", m.grad_norm)
          .add("learning_rate", r.lr)
          .add("images_per_s", ips)
          .add("elapsed_s", elapsed);
      for (const Metric& metric : m.routing) record.add(metric.name, metric.value);
      out.write(record);
      window_start = Clock::now();
    }
    if (c.eval_every > 0 && step % c.eval_every == 0 && step != c.total_steps) run_eval(step);
    if ((c.checkpoint_every > 0 && step % c.checkpoint_every == 0) || step == c.total_steps)
      save(step);
  }
  const double train_seconds = seconds_since(start);
  const EvalResult final_eval = run_eval(c.total_steps);
  if (out.active() && !final_eval.confusion.empty()) {
    write_file_atomically(c.run_dir + "/confusion.csv",
                          confusion_csv(final_eval.confusion, c.eval_info.class_names));
  }
  if (!c.eval_capacity_sweep.empty() && !c.eval_data.empty()) {
    const std::vector<SweepPoint> sweep = capacity_sweep(trainer, eval_source, c.eval_capacity_sweep);
    out.print("capacity sweep (precision@1 / dropped choices):\n  ratio     BPR               vanilla\n");
    const size_t n = c.eval_capacity_sweep.size();
    for (size_t i = 0; i < n; ++i) {
      const EvalResult& b = sweep[i].result;
      const EvalResult& v = sweep[n + i].result;
      out.print("  %5.2f   %.4f / %5.1f%%   %.4f / %5.1f%%\n", sweep[i].capacity_ratio,
                b.precision_at_1(), 100 * b.dropped_fraction(), v.precision_at_1(),
                100 * v.dropped_fraction());
    }
    if (out.active()) write_file_atomically(c.run_dir + "/sweep.json", sweep_json(sweep));
  }
  JsonRecord result;
  result.add("steps", c.total_steps)
      .add("epochs", c.total_steps / steps_per_epoch)
      .add("train_seconds", train_seconds)
      .add("total_seconds", seconds_since(start));
  if (!c.eval_data.empty()) {
    result.add("eval_data", c.eval_data)
        .add("precision_at_1", final_eval.precision_at_1())
        .add("eval_loss", final_eval.mean_loss())
        .add("eval_examples", final_eval.count);
    if (moe.enabled()) result.add("dropped", final_eval.dropped_fraction());
    if (superclass_eval) result.add("router_superclass_accuracy", final_eval.superclass_accuracy());
  }
  result.add("parameters", params).add("forward_mflops_per_image",
                                       trainer.forward_flops_per_image(false) / 1e6);
  result.add("ranks", static_cast<int64_t>(world.size()));
  if (out.active()) write_file_atomically(c.run_dir + "/result.json", result.str() + "\n");
  out.print("done: %s\nrun directory: %s\n", result.str().c_str(), c.run_dir.c_str());
  return 0;
}

}  // namespace
}  // namespace vmoe

int main(int argc, char** argv) {
  return vmoe::run_mpi_program(
      argc, argv,
      {.name = "vmoe_train",
       .usage = "trains a Vision Transformer (optionally with mixture-of-experts layers) on an "
                "HDF5 dataset.\nUsage: vmoe_train --train_data=train.h5 --eval_data=test.h5 "
                "[flags], or --flagfile=launch/configs/<config>.flags",
       .help_source = "train_config",
       .run = vmoe::run,
       .matrix_products = true});
}
