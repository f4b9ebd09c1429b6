// Times the training step (forward, loss, backward, clipping, Adam) of a
// V-MoE (or, with --experts=0, a dense ViT) on synthetic data and prints
// images/s, achieved GFLOP/s and the MoE phases' share of the step.
// Its flags and defaults mirror the PyTorch peer (vmoe_torch.py in the bench
// scripts), so the two can run side by side on the same model and batch.
// --backend=cuda times the GPU step (one GPU per rank, NCCL), --precision=bf16
// mixed precision, --tf32 TF32 fp32 GEMMs. The synthetic batch stays on the
// device (--upload copies it from the host every step, as training does).
// Besides images/s it prints the achieved FLOP/s, a GEMM's peak FLOP/s
// measured on the same device and precision (--peak_gemm), their ratio (MFU),
// and the step's split by phase, timed on the device's timeline (CUDA events
// on a GPU). On the CPU it also replays the steps' GEMMs alone, after each of
// --rounds rounds of steps: their GFLOP/s (OpenBLAS at the model's shapes),
// the step's share of that rate (the median of the rounds', and their range),
// and the share of the step's time the GEMMs take; then the same GEMMs with
// their operands in DRAM (cold_gemms), where a step's activations come from.
#include <gflags/gflags.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/process_groups.h"
#include "core/cpu/blas_kernels.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_isa.h"
#include "core/phase_timer.h"
#include "core/random.h"
#include "launch/compute.h"
#include "launch/trainer.h"
#include "parallel/moe_config.h"
#include "tests/bench/gemm_replay.h"

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
DEFINE_int32(experts, 8, "experts per MoE layer (0 = dense ViT)");
DEFINE_int32(k, 2, "experts per token");
DEFINE_int32(moe_every, 2, "MoE in blocks every-N (N-1, 2N-1, ...)");
DEFINE_int32(group, 8, "images per routing group");
DEFINE_double(capacity, 1.05, "capacity ratio");
DEFINE_bool(phases, true, "print the time split into routing, dispatch, experts, combine, rest");
DEFINE_bool(skip_empty_slots, true,
            "--backend=cpu: expert GEMMs skip empty capacity slots (false: the fixed layout a "
            "GPU computes whole)");
DEFINE_int32(expert_parallel, 0, "ranks per expert-parallel group (0 = all)");
DEFINE_string(expert_exchange, "auto",
              "auto (shared memory on one node, on the CPU) or all_to_all, as vmoe_train's");
DEFINE_string(backend, "cpu", "cpu or cuda");
DEFINE_int32(device, -1, "--backend=cuda: this rank's GPU (-1 = local rank modulo the visible)");
DEFINE_string(precision, "fp32", "fp32 or bf16 (matrix-product inputs and exchanges)");
DEFINE_bool(tf32, false, "--backend=cuda: fp32 GEMMs on TF32 tensor cores");
DEFINE_int32(attention_pad_to, -1,
             "attention layout: 0 = strided heads, n > 0 = head-major with tokens padded to a "
             "multiple of n (-1: the backend's default)");
DEFINE_bool(upload, false, "copy the batch from the host every step (as training does)");
DEFINE_bool(blas_core, false,
            "print the OpenBLAS kernels this run would use, and exit "
            "(vs_torch.sh gives the peer the same)");
DEFINE_bool(replay_gemms, true,
            "--backend=cpu: also time the steps' GEMMs alone (OpenBLAS at the steps' shapes), "
            "the rate the step's GFLOP/s is held against");
DEFINE_int32(rounds, 5,
             "--replay_gemms: the timed steps in this many rounds, each followed by as many "
             "replays of the GEMMs; the step's share of their rate is the median of the rounds'");
DEFINE_bool(capture_step, false,
            "record the step once (a CUDA graph on a GPU) and replay it (not with --phases)");
DEFINE_bool(gemm_shapes, false,
            "--backend=cpu: print each GEMM shape of the step with its share of the GEMM time, "
            "the rate OpenBLAS reaches on it alone and the rate it reached in the steps");
DEFINE_int32(peak_gemm, 0, "N of the N x N x N GEMM that measures the device's peak (0: 8192 "
             "on cuda, 1024 on cpu; -1: skip)");

namespace {

// FLOP/s of an n x n x n GEMM at the backend's precision, after a warm-up.
double gemm_peak(vmoe::Backend& be, int n) {
  using vmoe::Trans;
  vmoe::Tensor a(be, {n, n}), b(be, {n, n}), c(be, {n, n});
  be.fill(a.data(), a.size(), 0.5f);
  be.fill(b.data(), b.size(), 0.25f);
  // Under bf16 the inputs carry their copies, as the step's GEMMs do: the
  // peak is the GEMM's, not a conversion's.
  vmoe::Bf16Tensor a16(be), b16(be);
  const vmoe::GemmInput ga = vmoe::with_bf16_copy(a16, a.data(), a.shape());
  const vmoe::GemmInput gb = vmoe::with_bf16_copy(b16, b.data(), b.shape());
  auto once = [&] {
    be.gemm(Trans::kNo, Trans::kNo, n, n, n, 1.0f, ga, n, gb, n, 0.0f, c.data(), n);
  };
  once();
  be.synchronize();
  int reps = 1;
  double seconds = 0;
  for (;;) {  // at least 0.2 s of GEMMs
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) once();
    be.synchronize();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds >= 0.2 || reps >= 1 << 12) break;
    reps *= 4;
  }
  const double size = n;
  return 2.0 * size * size * size * reps / seconds;
}

// One barrier's waits on one rank: how they spread, and their share of the
// step. A rank that waits at the barriers after the experts (experts,
// experts_backward) in most steps, while its peers do not, has the lighter
// experts; waits that are short in most steps but milliseconds long in a few,
// at barriers with equal work before them on every rank (live_counts,
// combine_backward), are the machine's: another task or the host took a
// core for a while.
struct WaitSpread {
  double calls, median_us, p90_us, p99_us, max_us, share;
};
constexpr const char* kWaitSites[] = {"live_counts", "dispatch", "experts", "combine_backward",
                                      "experts_backward"};
constexpr int kSites = sizeof kWaitSites / sizeof kWaitSites[0];

// Every rank's spread at each barrier, [rank][site], on every rank.
std::vector<WaitSpread> gather_waits(vmoe::Communicator& world,
                                     const std::map<std::string, std::vector<double>>& spans,
                                     double seconds) {
  std::vector<WaitSpread> mine(kSites, WaitSpread{});
  for (int i = 0; i < kSites; ++i) {
    const auto it = spans.find(std::string("exchange_wait.") + kWaitSites[i]);
    if (it == spans.end() || it->second.empty()) continue;
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    const auto at = [&](double q) { return 1e6 * v[static_cast<size_t>(q * (v.size() - 1))]; };
    double sum = 0;
    for (double x : v) sum += x;
    mine[i] = {
        static_cast<double>(v.size()), at(0.5), at(0.9), at(0.99), 1e6 * v.back(), sum / seconds};
  }
  std::vector<WaitSpread> all(static_cast<size_t>(kSites) * world.size());
  world.all_gather(mine.data(), all.data(), kSites * sizeof(WaitSpread));
  return all;
}

void print_waits(const std::vector<WaitSpread>& all, int ranks) {
  // None where no exchange waits (one rank, or a GPU's fixed layout).
  if (std::all_of(all.begin(), all.end(), [](const WaitSpread& w) { return w.calls == 0; })) return;
  std::printf(
      "# exchange waits per rank, us a call: median/90th/99th percentile/max (share of "
      "the step)\n");
  for (int i = 0; i < kSites; ++i) {
    std::printf("#   %-17s", kWaitSites[i]);
    for (int r = 0; r < ranks; ++r) {
      const WaitSpread& w = all[static_cast<size_t>(r) * kSites + i];
      if (w.calls == 0) {
        std::printf("  rank %d: -", r);
        continue;
      }
      std::printf("  rank %d: %.0f/%.0f/%.0f/%.0f (%.2f%%)", r, w.median_us, w.p90_us, w.p99_us,
                  w.max_us, 100 * w.share);
    }
    std::printf("\n");
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace vmoe;
  choose_blas_kernels(argv);
  MpiRuntime mpi(&argc, &argv);
  MpiCommunicator world;
  gflags::SetUsageMessage(
      "Times the V-MoE (or dense ViT) training step on synthetic data; prints images/s, GFLOP/s "
      "and the phases of the step. Run it under mpirun for data and expert parallelism.");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_blas_core) {
    if (world.rank() == 0) std::printf("%s\n", openblas_core().c_str());
    return 0;
  }
  if (FLAGS_precision != "fp32" && FLAGS_precision != "bf16") {
    std::fprintf(stderr, "train_step_bench: --precision must be fp32 or bf16\n");
    return 1;
  }
  if (FLAGS_steps < 1 || FLAGS_rounds < 1) {
    std::fprintf(stderr, "train_step_bench: --steps and --rounds must be at least 1\n");
    return 1;
  }
  Compute compute(FLAGS_backend, FLAGS_device, world);
  Backend& be = compute.backend();
  if (FLAGS_tf32 && !be.set_tf32(true)) {
    std::fprintf(stderr, "train_step_bench: --tf32 needs --backend=cuda\n");
    return 1;
  }
  if (FLAGS_attention_pad_to >= 0) be.set_attention_pad_to(FLAGS_attention_pad_to);
  if (auto* cpu = dynamic_cast<CpuBackend*>(&be)) cpu->set_skip_empty_slots(FLAGS_skip_empty_slots);
  if (FLAGS_capture_step && FLAGS_phases) {
    // Phase timing needs the step uncaptured: off unless asked for by name.
    if (!gflags::GetCommandLineFlagInfoOrDie("phases").is_default) {
      std::fprintf(stderr, "train_step_bench: --phases times the step uncaptured; drop one\n");
      return 1;
    }
    FLAGS_phases = false;
  }
  TrainerOptions o;
  o.capture_step = FLAGS_capture_step;
  o.precision = FLAGS_precision == "bf16" ? Precision::kBf16 : Precision::kFp32;
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
  if (FLAGS_experts > 0) {
    o.moe.layers = parse_moe_layers("every:" + std::to_string(FLAGS_moe_every), FLAGS_depth);
    o.moe.num_experts = FLAGS_experts;
    o.moe.num_selected = o.moe.eval_num_selected = FLAGS_k;
    o.moe.group_size = FLAGS_group;
    o.moe.capacity_ratio = o.moe.eval_capacity_ratio = FLAGS_capacity;
  }
  ProcessGroups groups = compute.make_groups(FLAGS_experts, FLAGS_expert_parallel,
                                             parse_exchange_mode(FLAGS_expert_exchange));
  Trainer trainer(be, o, &groups);

  const int64_t rows = FLAGS_batch / world.size();  // this rank's share of the batch
  const int64_t pixels = rows * FLAGS_image * FLAGS_image * FLAGS_channels;
  std::vector<float> images(static_cast<size_t>(pixels));
  std::vector<int32_t> labels(static_cast<size_t>(rows));
  RandomStream rng(world.rank(), Stream::kTest);
  for (float& x : images) x = rng.normal();
  for (int32_t& y : labels) y = static_cast<int32_t>(rng.below(FLAGS_classes));
  const LossTargets targets{rows, labels.data(), nullptr, nullptr};

  trainer.stage(images.data(), targets);
  auto step = [&] {
    if (FLAGS_upload) trainer.stage(images.data(), targets);
    trainer.train_staged();
  };
  for (int i = 0; i < FLAGS_warmup; ++i) step();
  // In rounds, each followed by a replay of its own GEMMs (logged as it
  // runs): the machine drifts (a shared VM by 5-10%), so each round's ratio
  // pairs steps with their GEMMs run moments apart, and the median of the
  // rounds' is what is printed. The routing, and so the experts' GEMMs,
  // change from step to step: the replay runs the same ones.
  auto* cpu = dynamic_cast<CpuBackend*>(&be);
  const bool replay = cpu != nullptr && FLAGS_replay_gemms;
  const int rounds = replay ? std::clamp(FLAGS_rounds, 1, FLAGS_steps) : 1;
  std::optional<bench::GemmReplay> replayer;  // its cold arena: 256 MiB or more
  if (replay) replayer.emplace(be);
  std::vector<GemmShape> calls;
  std::vector<double> round_ratio, round_rate, round_gemm_time, round_cold_ratio, round_cold_rate;
  // The step's useful FLOPs (k experts per token), per rank.
  const double step_flops =
      3.0 * trainer.forward_flops_per_image(true) * FLAGS_batch / world.size();
  PhaseTimer::instance().enable(FLAGS_phases, &be);
  PhaseTimer::instance().keep_spans("exchange_wait.");
  // Host copies and waits within the steps (the rounds' own synchronising
  // is not theirs), and bf16 conversions.
  int64_t host_events_total = 0;
  Bf16Conversions conversions{};
  double seconds = 0;
  for (int r = 0; r < rounds; ++r) {
    const int steps = FLAGS_steps / rounds + (r < FLAGS_steps % rounds ? 1 : 0);
    calls.clear();
    if (replay) cpu->log_gemms(&calls);
    be.synchronize();
    world.barrier();
    const auto start = std::chrono::steady_clock::now();
    const int64_t traffic_before = be.traffic().total();
    const Bf16Conversions conversions_before = be.bf16_conversions();
    size_t first_step_calls = 0;  // the GEMMs of the round's first step
    for (int i = 0; i < steps; ++i) {
      step();
      if (i == 0) first_step_calls = calls.size();
    }
    host_events_total += be.traffic().total() - traffic_before;
    conversions.gemm_inputs += be.bf16_conversions().gemm_inputs - conversions_before.gemm_inputs;
    conversions.explicit_calls +=
        be.bf16_conversions().explicit_calls - conversions_before.explicit_calls;
    be.synchronize();
    world.barrier();
    const double round_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    seconds += round_seconds;
    if (!replay) continue;
    cpu->log_gemms(nullptr);
    const bench::GemmReplay::Times t = replayer->run(calls, first_step_calls);
    world.barrier();
    const double step_rate = step_flops * steps / round_seconds;
    round_rate.push_back(t.flops / t.hot_seconds);
    round_gemm_time.push_back(t.hot_seconds / round_seconds);
    round_ratio.push_back(step_rate / round_rate.back());
    round_cold_rate.push_back(t.flops / t.cold_seconds);
    round_cold_ratio.push_back(step_rate / round_cold_rate.back());
  }
  // Per step: host copies and waits (0 but the uploads asked for), and bf16
  // conversions (GEMM inputs converted inside GEMMs, explicit ones).
  const double host_events = static_cast<double>(host_events_total) / FLAGS_steps;
  const double gemm_conversions = static_cast<double>(conversions.gemm_inputs) / FLAGS_steps;
  const double explicit_conversions = static_cast<double>(conversions.explicit_calls) / FLAGS_steps;
  const std::map<std::string, double> phases = PhaseTimer::instance().totals();
  const std::vector<WaitSpread> waits =
      FLAGS_phases && world.size() > 1
          ? gather_waits(world, PhaseTimer::instance().spans(), seconds)
          : std::vector<WaitSpread>{};
  PhaseTimer::instance().keep_spans(nullptr);
  PhaseTimer::instance().enable(false);
  // Then a round that times each GEMM inside the steps (two clock reads a
  // call, which the rounds above are spared): their share of the step as run.
  double step_gemm_time = 0;
  if (replay) {
    const int steps = std::max(1, FLAGS_steps / rounds);
    calls.clear();
    cpu->log_gemms(&calls, /*time_each=*/true);
    world.barrier();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();
    world.barrier();
    const double round_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    cpu->log_gemms(nullptr);
    for (const GemmShape& g : calls) step_gemm_time += g.seconds / round_seconds;
    if (FLAGS_gemm_shapes) replayer->print_shapes(calls);
  }
  const int peak_n = FLAGS_peak_gemm != 0 ? FLAGS_peak_gemm : be.name() == "cuda" ? 8192 : 1024;
  const double peak = peak_n > 0 ? gemm_peak(be, peak_n) : 0.0;
  if (world.rank() != 0) return 0;
  const double images_per_s = static_cast<double>(FLAGS_batch) * FLAGS_steps / seconds;
  // Per rank: the step's useful FLOPs (k experts per token) against one device's peak.
  const double flops = step_flops * FLAGS_steps / seconds;
  const long long params =
      trainer.params().num_parameters(Region::kDense) +
      (FLAGS_experts > 0 ? trainer.params().num_parameters(Region::kExpert) * FLAGS_experts /
                               groups.placement().local_experts
                         : 0);
  std::printf("vmoe backend=%s precision=%s%s ranks=%d params=%lld batch=%d images/s=%.1f "
              "GFLOP/s=%.1f step_ms=%.1f",
              be.name().c_str(), FLAGS_precision.c_str(), FLAGS_tf32 ? "+tf32" : "", world.size(),
              params, FLAGS_batch, images_per_s, flops / 1e9, 1e3 * seconds / FLAGS_steps);
  if (peak > 0)
    std::printf(" peak_GFLOP/s=%.1f (gemm %d) MFU=%.1f%%", peak / 1e9, peak_n, 100 * flops / peak);
  if (replay) {
    const auto [lo, hi] = std::minmax_element(round_ratio.begin(), round_ratio.end());
    std::printf(
        " step_gemms_GFLOP/s=%.1f step/gemms=%.1f%% (%d rounds: %.1f-%.1f%%) "
        "gemm_time=%.1f%% (in the step %.1f%%)",
        median(round_rate) / 1e9, 100 * median(round_ratio), rounds, 100 * *lo, 100 * *hi,
        100 * median(round_gemm_time), 100 * step_gemm_time);
    std::printf(" cold_gemms_GFLOP/s=%.1f step/cold_gemms=%.1f%%", median(round_cold_rate) / 1e9,
                100 * median(round_cold_ratio));
  }
  std::printf(" host_events/step=%.0f", host_events);
  if (FLAGS_capture_step) std::printf(" replayed=%s", be.capture_valid() ? "yes" : "no");
  if (FLAGS_precision == "bf16")
    std::printf(" bf16_conversions/step=%.0f+%.0f", gemm_conversions, explicit_conversions);
  if (be.name() == "cpu")
    std::printf(" blas=%s loops=%s", openblas_core().c_str(), cpu_loops_isa());
  if (FLAGS_phases) {
    // Nested phases (the all-to-alls run inside dispatch and combine, the
    // in-place exchange's barrier inside them) count once.
    double timed = 0;
    for (const auto& [name, t] : phases)
      if (!name.starts_with("all_to_all") && !name.starts_with("exchange_wait")) timed += t;
    for (const char* name : {"attention", "dense_mlp", "routing", "dispatch", "experts", "combine",
                             "all_to_all", "exchange_wait", "gradient_all_reduce", "optimizer"}) {
      const auto it = phases.find(name);
      std::printf(" %s=%.1f%%", name, it == phases.end() ? 0.0 : 100 * it->second / seconds);
    }
    std::printf(" other=%.1f%%", 100 * (seconds - timed) / seconds);
  }
  std::printf("\n");
  print_waits(waits, world.size());
  return 0;
}
