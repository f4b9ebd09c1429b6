// vmoe_train: trains a ViT on an HDF5 dataset, logging to a run directory.
#include <gflags/gflags.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "core/check.h"
#include "core/cpu_backend.h"
#include "datasets/loader.h"
#include "launch/metrics_log.h"
#include "launch/train_config.h"
#include "launch/trainer.h"

namespace vmoe {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

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
          b.multi_hot.empty() ? nullptr : b.multi_hot.data(), b.mask.data()};
}

EvalResult evaluate(Trainer& trainer, const TrainConfig& c) {
  Loader loader({.path = c.eval_data,
                 .batch_size = c.eval_batch_size,
                 .training = false,
                 .seed = c.trainer.seed,
                 .prefetch = c.prefetch});
  EvalResult total;
  Batch batch;
  while (loader.next(batch)) total += trainer.evaluate(batch.images.data(), targets_of(batch));
  return total;
}

int run() {
  TrainConfig c = train_config_from_flags();
  const DatasetInfo& train_info = c.train_info;
  if (c.run_dir.empty()) c.run_dir = default_run_dir();
  std::filesystem::create_directories(c.run_dir);
  write_file_atomically(c.run_dir + "/flags.txt", flags_as_flagfile());
  MetricsLog log(c.run_dir + "/metrics.jsonl");

  CpuBackend backend;
  Trainer trainer(backend, c.trainer);
  const ViTConfig& m = c.trainer.model;
  std::printf("vmoe_train: %s (%lld images %dx%dx%d, %d classes) -> %s\n", c.train_data.c_str(),
              static_cast<long long>(train_info.size), m.image.height, m.image.width,
              m.image.channels, m.num_classes, c.run_dir.c_str());
  std::printf("model: ViT D=%d L=%d heads=%d mlp=%d patch=%d tokens=%d, %lld parameters, "
              "%.1f MFLOP/image forward; %lld steps of %lld images, backend %s\n",
              m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim, m.patch_size, m.tokens(),
              static_cast<long long>(trainer.params().num_parameters(Region::kDense)),
              trainer.model().forward_flops_per_image() / 1e6, static_cast<long long>(c.total_steps),
              static_cast<long long>(c.trainer.global_batch), backend.name().c_str());
  std::fflush(stdout);

  Loader loader({.path = c.train_data,
                 .batch_size = c.trainer.global_batch,
                 .training = true,
                 .seed = c.trainer.seed,
                 .crop_padding = c.crop_padding,
                 .flip = c.flip,
                 .prefetch = c.prefetch});
  const double steps_per_epoch = static_cast<double>(train_info.size) / c.trainer.global_batch;
  const auto start = Clock::now();
  auto window_start = start;
  double window_loss = 0, window_aux = 0;
  int64_t window_steps = 0;
  Batch batch;
  auto run_eval = [&](int64_t step) {
    if (c.eval_data.empty()) return EvalResult{};
    const auto t = Clock::now();
    const EvalResult r = evaluate(trainer, c);
    std::printf("eval  step %lld: precision@1 %.4f  loss %.4f  (%lld images, %.1fs)\n",
                static_cast<long long>(step), r.precision_at_1(), r.mean_loss(),
                static_cast<long long>(r.count), seconds_since(t));
    std::fflush(stdout);
    log.write(JsonRecord()
                  .add("type", std::string("eval"))
                  .add("step", step)
                  .add("precision_at_1", r.precision_at_1())
                  .add("loss", r.mean_loss())
                  .add("examples", r.count));
    return r;
  };

  for (int64_t step = 1; step <= c.total_steps; ++step) {
    loader.next(batch);
    const StepResult r = trainer.train_step(batch.images.data(), targets_of(batch));
    VMOE_CHECK(std::isfinite(r.loss) && std::isfinite(r.grad_norm), "training diverged at step ",
               step, ": loss ", r.loss, ", gradient norm ", r.grad_norm,
               " (try a lower --learning_rate or --grad_clip_norm)");
    window_loss += r.loss;
    window_aux += r.aux_loss;
    ++window_steps;
    if (step % c.log_every == 0 || step == c.total_steps) {
      const double dt = seconds_since(window_start);
      const double ips = static_cast<double>(window_steps * c.trainer.global_batch) / dt;
      const double elapsed = seconds_since(start);
      const double eta = elapsed / step * (c.total_steps - step);
      const double epoch = step / steps_per_epoch;
      std::printf("step %6lld/%lld  epoch %6.2f  loss %.4f  lr %.2e  %7.1f img/s  ETA %s\n",
                  static_cast<long long>(step), static_cast<long long>(c.total_steps), epoch,
                  window_loss / window_steps, r.lr, ips, format_duration(eta).c_str());
      std::fflush(stdout);
      log.write(JsonRecord()
                    .add("type", std::string("train"))
                    .add("step", step)
                    .add("epoch", epoch)
                    .add("loss", window_loss / window_steps)
                    .add("aux_loss", window_aux / window_steps)
                    .add("grad_norm", r.grad_norm)
                    .add("learning_rate", r.lr)
                    .add("images_per_s", ips)
                    .add("elapsed_s", elapsed));
      window_loss = window_aux = 0;
      window_steps = 0;
      window_start = Clock::now();
    }
    if (c.eval_every > 0 && step % c.eval_every == 0 && step != c.total_steps) run_eval(step);
  }
  const double train_seconds = seconds_since(start);
  const EvalResult final_eval = run_eval(c.total_steps);
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
  }
  write_file_atomically(c.run_dir + "/result.json", result.str() + "\n");
  std::printf("done: %s\nrun directory: %s\n", result.str().c_str(), c.run_dir.c_str());
  return 0;
}

}  // namespace
}  // namespace vmoe

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "trains a Vision Transformer (optionally with mixture-of-experts layers) on an HDF5 "
      "dataset.\nUsage: vmoe_train --train_data=train.h5 --eval_data=test.h5 [flags], or "
      "--flagfile=launch/configs/<config>.flags");
  gflags::SetVersionString("0.1.0");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc > 1) {
    std::fprintf(stderr, "vmoe_train: error: unexpected argument '%s' (flags are --name=value)\n",
                 argv[1]);
    return 1;
  }
  try {
    return vmoe::run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmoe_train: error: %s\n", e.what());
    return 1;
  }
}
