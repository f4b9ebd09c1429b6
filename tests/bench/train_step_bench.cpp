// Times the training step (forward, loss, backward, clipping, Adam) of a
// dense ViT on synthetic data and prints images/s and achieved GFLOP/s.
// Its flags and defaults mirror the PyTorch peer (shared/bench/vmoe_torch.py
// --experts 0), so the two can run side by side on the same model and batch.
#include <gflags/gflags.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "core/cpu_backend.h"
#include "core/random.h"
#include "launch/trainer.h"

DEFINE_int32(image, 28, "image height and width");
DEFINE_int32(channels, 1, "image channels");
DEFINE_int32(patch, 4, "patch size");
DEFINE_int32(dim, 96, "hidden size D");
DEFINE_int32(depth, 6, "number of blocks");
DEFINE_int32(heads, 3, "attention heads");
DEFINE_int32(mlp, 384, "MLP hidden size");
DEFINE_int32(classes, 10, "classes");
DEFINE_int32(batch, 128, "batch size");
DEFINE_int32(steps, 10, "timed steps");
DEFINE_int32(warmup, 2, "untimed steps first");
DEFINE_int32(experts, 0, "experts per MoE layer (0 = dense ViT)");

int main(int argc, char** argv) {
  gflags::SetUsageMessage("Times the dense ViT training step; prints images/s and GFLOP/s.");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  using namespace vmoe;
  if (FLAGS_experts != 0) {
    std::fprintf(stderr, "train_step_bench: --experts=%d: only the dense model (0) is built yet\n",
                 FLAGS_experts);
    return 1;
  }
  CpuBackend be;
  TrainerOptions o;
  o.model.image = {FLAGS_image, FLAGS_image, FLAGS_channels};
  o.model.patch_size = FLAGS_patch;
  o.model.hidden_size = FLAGS_dim;
  o.model.num_layers = FLAGS_depth;
  o.model.num_heads = FLAGS_heads;
  o.model.mlp_dim = FLAGS_mlp;
  o.model.num_classes = FLAGS_classes;
  o.optimizer = {.kind = OptimizerKind::kAdam, .weight_decay = 0.1f, .grad_clip_norm = 1.0f};
  o.schedule = {.base = 1e-3, .total_steps = FLAGS_warmup + FLAGS_steps, .decay = Decay::kConstant};
  o.global_batch = FLAGS_batch;
  Trainer trainer(be, o);

  const int64_t pixels = int64_t{FLAGS_batch} * FLAGS_image * FLAGS_image * FLAGS_channels;
  std::vector<float> images(static_cast<size_t>(pixels));
  std::vector<int32_t> labels(static_cast<size_t>(FLAGS_batch));
  RandomStream rng(0, Stream::kTest);
  for (float& x : images) x = rng.normal();
  for (int32_t& y : labels) y = static_cast<int32_t>(rng.below(FLAGS_classes));
  const LossTargets targets{FLAGS_batch, labels.data(), nullptr, nullptr};

  for (int i = 0; i < FLAGS_warmup; ++i) trainer.train_step(images.data(), targets);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < FLAGS_steps; ++i) trainer.train_step(images.data(), targets);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double images_per_s = static_cast<double>(FLAGS_batch) * FLAGS_steps / seconds;
  const double gflops = 3.0 * trainer.model().forward_flops_per_image() * images_per_s / 1e9;
  std::printf("vmoe params=%lld batch=%d images/s=%.1f GFLOP/s=%.1f step_ms=%.1f\n",
              static_cast<long long>(trainer.params().num_parameters(Region::kDense)),
              FLAGS_batch, images_per_s, gflops, 1e3 * seconds / FLAGS_steps);
  return 0;
}
