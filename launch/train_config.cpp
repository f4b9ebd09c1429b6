#include "launch/train_config.h"

#include <gflags/gflags.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <vector>

#include "core/attention.h"
#include "core/check.h"
#include "datasets/dataset_info.h"
#include "launch/eval_config.h"
#include "launch/flag_lists.h"

// ---- data -------------------------------------------------------------------
DEFINE_string(train_data, "", "Training set: an HDF5 file in the schema of datasets/README.md.");
DEFINE_string(eval_data, "", "Evaluation set (same image shape and classes); empty = none.");
DEFINE_string(run_dir, "", "Directory for metrics.jsonl, flags.txt and result.json "
              "(default: runs/<date>-<time>).");
DEFINE_string(tensorboard_dir, "",
              "Also write every metrics.jsonl number as a TensorBoard "
              "scalar (train/loss, eval/precision_at_1, train/moe/block_N/dropped, ...) to an "
              "event file in this folder; empty = none.");
DEFINE_int64(batch_size, 128, "Global training batch size (images per step, all ranks).");
DEFINE_int64(eval_batch_size, 512, "Global evaluation batch size (a multiple of --group_size).");
DEFINE_int32(augment_crop_padding, 0,
             "Training augmentation: zero-pad by this many pixels, then random-crop back (0 = off).");
DEFINE_bool(augment_flip, true, "Training augmentation: random horizontal flips.");
DEFINE_int32(prefetch, 2, "Batches the loader prepares ahead on its background thread.");
DEFINE_int32(loader_threads, 1, "Threads decoding and augmenting each batch's images (encoded "
             "JPEG/PNG datasets; raw ones are augmented on them too).");
DEFINE_string(input_pixels, "auto", "How training images reach the model: 'uint8' (8-bit pixels, "
              "pinned and copied beside the previous step, scaled to [-1, 1] and mixed up on the "
              "device: a quarter of the bytes), 'float' (scaled by the loader threads), or "
              "'auto': uint8 with --backend=cuda, float on the CPU.");
DEFINE_string(image_size, "", "Encoded (JPEG/PNG) datasets: the resolution images are cropped "
              "and resized to, HxW or N; empty = the dataset's image_height/width attributes.");
DEFINE_double(augment_min_area, 0.05, "Encoded datasets, training: inception crop of an area "
              "fraction in [this, 1] and aspect ratio in [3/4, 4/3], resized to --image_size.");
DEFINE_double(eval_crop_fraction, 0.875, "Encoded datasets, evaluation: resize so the central "
              "crop of this fraction of the shorter side fills --image_size (0.875: 256 -> 224).");
DEFINE_double(mixup_alpha, 0, "Multi-label training: mixup of image pairs with lambda ~ "
              "Beta(alpha, alpha) per batch, targets mixed alike; 0 = off.");
DEFINE_int32(max_open_shards, 16, "Dataset shard files each loader keeps open at once.");

// ---- model ------------------------------------------------------------------
DEFINE_int32(patch_size, 7, "Patch size P: images are cut into non-overlapping PxP patches.");
DEFINE_int32(hidden_size, 96, "Transformer width D.");
DEFINE_int32(num_layers, 6, "Number of transformer blocks.");
DEFINE_int32(num_heads, 3, "Attention heads (must divide --hidden_size).");
DEFINE_int32(mlp_dim, 384, "Hidden width of each MLP.");
DEFINE_int32(pre_logits_size, 0, "A tanh dense layer of this width between the pooled features "
             "and the head, as the V-MoE paper's JFT models (0 = none).");
DEFINE_string(classifier, "token", "Pooling before the head: 'token' (class token) or 'gap' "
              "(mean of the patch tokens, no class token).");
DEFINE_bool(remat, false, "Activation recomputation: each transformer block keeps only its input "
            "between forward and backward and re-runs its forward (routing and all-to-alls "
            "included) right before its backward. The same gradients bit for bit, one block's "
            "activations in memory instead of every block's, about a third more compute. "
            "vmoe_eval ignores it (forward only).");

// ---- mixture of experts -----------------------------------------------------
DEFINE_string(moe_layers, "", "Blocks whose MLP is a mixture of experts: 'every:N' (blocks N-1, "
              "2N-1, ...), 'last:N' (the last N of the every-2 blocks), a list '1,3,5', or empty "
              "for a dense ViT.");
DEFINE_int32(num_experts, 8, "Experts per MoE layer, E.");
DEFINE_int32(num_selected, 2, "Experts each token (or image) is routed to, k (1 <= k <= E).");
DEFINE_int32(group_size, 8, "Images per routing group; capacity is per group, and each rank's "
             "batch must hold whole groups.");
DEFINE_double(capacity_ratio, 1.05, "Training capacity ratio: each expert takes "
              "ceil(k*S*ratio/E) items per group, rounded up to a multiple of 4.");
DEFINE_bool(batch_priority, true, "Batch-priority routing: items with a higher top-1 gate "
            "claim expert slots first (otherwise earlier items do).");
DEFINE_double(eval_capacity_ratio, 1.05, "Capacity ratio at evaluation (default: "
              "--capacity_ratio).");
DEFINE_int32(eval_num_selected, 2, "k at evaluation (default: --num_selected).");
DEFINE_bool(eval_batch_priority, true, "Batch-priority routing at evaluation (default: "
            "--batch_priority).");
DEFINE_double(router_noise_std, 1.0, "Router noise: N(0, (std/E)^2) added to the logits in "
              "training.");
DEFINE_double(importance_loss_weight, 0.005, "Weight of the importance loss (per group, averaged "
              "over groups, summed over MoE layers).");
DEFINE_double(load_loss_weight, 0.005, "Weight of the load loss.");
DEFINE_double(gshard_loss_weight, 0.0, "Weight of the GShard load-balancing loss.");
DEFINE_double(router_z_loss_weight, 0.0, "Weight of the router z-loss.");
DEFINE_string(routing, "token", "'token': each MoE layer routes tokens (V-MoE); 'image': one "
              "router before the first MoE layer routes whole images for all of them "
              "(Mobile V-MoE).");
DEFINE_string(image_router_input, "mean", "Image routing: the router reads the mean of the "
              "image's tokens ('mean') or its class token ('token').");
DEFINE_double(superclass_loss_weight, -1, "Image routing: weight of CE(router logits, "
              "super-class from /superclass); default 0.3 when the training set has super-classes, "
              "else 0.");
DEFINE_string(eval_capacity_sweep, "", "After training, also evaluate at these capacity ratios "
              "(comma-separated), with and without batch-priority routing; writes "
              "sweep.json.");

// ---- device -------------------------------------------------------------------
DEFINE_string(backend, "cpu", "'cpu' (OpenBLAS, MPI) or 'cuda' (one GPU per rank, cuBLAS, NCCL; "
              "needs a build with the CUDA backend).");
DEFINE_string(precision, "fp32", "'fp32', or 'bf16': matrix products on bfloat16 inputs (fp32 "
              "accumulation) and expert all-to-all buffers in bfloat16; weights, optimiser "
              "state, router, softmax, LayerNorm statistics and losses stay fp32. On the CPU "
              "backend bf16 is emulated (for testing).");
DEFINE_int32(device, -1, "--backend=cuda: the GPU of this rank; -1 = local rank modulo the "
             "visible devices (one rank per GPU).");
DEFINE_bool(tf32, false, "--backend=cuda: fp32 matrix products on TF32 tensor cores (inputs "
            "rounded to a 10-bit mantissa, fp32 accumulation). Off: exact fp32.");
DEFINE_int32(attention_pad_to, -1,
             "Attention's layout: 0 = strided views of the heads (the CPU's default), n > 0 = "
             "heads packed head-major with tokens padded to a multiple of n (8: the GPU's "
             "default, its batched GEMMs on tensor-core kernels); -1 = the backend's default. "
             "Same results either way; vmoe_plan counts the layout's memory.");
DEFINE_bool(capture_step, false,
            "Record the training step once as a CUDA graph (after two "
            "uncaptured steps) and replay it: one launch instead of the step's thousands. "
            "Recorded again when an evaluation reallocates memory it uses; runs uncaptured "
            "(with a message) where recording fails. Same results bit for bit.");

// ---- parallel layout ----------------------------------------------------------
DEFINE_int32(expert_parallel, 0, "Ranks per expert-parallel group, P: it must divide the number "
             "of ranks, and divide --num_experts or be a multiple of it. 0 = the largest such P "
             "(all ranks when E allows); more than the ranks = all ranks. See README 'Running on "
             "several ranks'.");
DEFINE_string(expert_exchange, "auto",
              "How expert buffers reach the experts' ranks: auto = on the "
              "CPU, ranks of an expert-parallel group on one node read each other's buffers in "
              "shared memory (MPI-3 shared windows), else MPI all-to-all (or NCCL on GPUs); "
              "all_to_all = always send them. Same results either way.");
DEFINE_double(allreduce_bucket_mb, 32, "Largest gradient all-reduce, in MiB (the dense "
              "gradients are summed in buckets of this size).");

// ---- optimisation -----------------------------------------------------------
DEFINE_string(optimizer, "adam", "'adam' (decoupled weight decay) or 'sgd' (momentum).");
DEFINE_double(learning_rate, 1e-3, "Peak learning rate, reached after the warm-up.");
DEFINE_double(end_learning_rate, 1e-5, "Learning rate at the last step (linear/cosine decay).");
DEFINE_int64(warmup_steps, 200, "Linear warm-up steps from 0 to --learning_rate.");
DEFINE_string(lr_decay, "cosine", "Decay after warm-up: 'linear', 'cosine' or 'constant'.");
DEFINE_double(weight_decay, 0.1, "Decoupled weight decay (times the learning rate), on kernels.");
DEFINE_double(adam_beta1, 0.9, "Adam beta1.");
DEFINE_double(adam_beta2, 0.999, "Adam beta2.");
DEFINE_double(momentum, 0.9, "SGD momentum.");
DEFINE_double(grad_clip_norm, 1.0, "Clip gradients to this global L2 norm (0 = off).");
DEFINE_double(num_epochs, 15, "Training length in epochs of the training set.");
DEFINE_int64(total_steps, 0, "Training length in steps; overrides --num_epochs when > 0.");
DEFINE_uint64(seed, 0, "Seed of every random stream (initialisation, data order, augmentation).");

// ---- checkpoints ------------------------------------------------------------
DEFINE_int64(checkpoint_every, 1000, "Save a checkpoint every this many steps, and at the end "
             "(0 = only at the end).");
DEFINE_int32(keep_checkpoints, 3, "Keep the newest this many checkpoints.");
DEFINE_string(checkpoint_dir, "", "Where checkpoints go (default: <run_dir>/checkpoints).");
DEFINE_bool(overwrite, false,
            "Without --resume, a checkpoint folder that already holds "
            "checkpoints is an error (they belong to another run); this removes them first.");
DEFINE_int32(checkpoint_failures_allowed, 0,
             "Checkpoints that may fail to be written (e.g. a "
             "full disk) before training stops; each failure is reported and leaves the earlier "
             "checkpoints intact. 0: the first failure stops training.");
DEFINE_double(collective_timeout, 300,
              "Seconds a rank may wait in one collective (or for the "
              "GPU while NCCL collectives run) before the job ends with a message naming the "
              "collective, the step and the ranks that did not arrive; a checkpoint write may "
              "take 10x as long. 0: wait forever.");
DEFINE_bool(resume, false, "Continue from the newest readable checkpoint in the checkpoint "
            "directory (same model and optimiser flags; any number of ranks).");
DEFINE_string(init_from, "",
              "Fine-tune: start from this checkpoint's parameters (a file, or a "
              "run or checkpoint folder: its newest complete checkpoint; not its "
              "optimiser state); a head with another class count is re-initialised, a position "
              "embedding of another patch grid resized bilinearly.");
DEFINE_string(init_skip, "", "With --init_from: comma-separated regular expressions; parameters "
              "whose name matches one keep their fresh initialisation (e.g. 'head/,router').");

// ---- logging ----------------------------------------------------------------
DEFINE_int64(log_every, 200, "Print and log training metrics every this many steps.");
DEFINE_int64(eval_every, 0, "Evaluate every this many steps (0 = only at the end).");

namespace vmoe {
namespace {

bool is_default(const char* flag) { return gflags::GetCommandLineFlagInfoOrDie(flag).is_default; }

std::vector<double> parse_ratios(const std::string& text) {
  std::vector<double> out;
  for (const std::string& item : split_commas(text)) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    VMOE_CHECK(!item.empty() && end == item.c_str() + item.size() && v > 0,
               "--eval_capacity_sweep='", text, "': expected positive numbers, found '", item, "'");
    out.push_back(v);
  }
  return out;
}

// Finite too: --learning_rate=inf would train on NaNs.
void check_positive(const char* flag, double v) {
  VMOE_CHECK(std::isfinite(v) && v > 0, "--", flag, " must be positive",
             std::isfinite(v) ? "" : " and finite", ", got ", v);
}
void check_non_negative(const char* flag, double v) {
  VMOE_CHECK(std::isfinite(v) && v >= 0, "--", flag, " must be >= 0",
             std::isfinite(v) ? "" : " and finite", ", got ", v);
}

}  // namespace

void validate_flags() {
  VMOE_CHECK(!FLAGS_train_data.empty(), "--train_data is required (an HDF5 file; see vmoe_import)");
  check_positive("batch_size", static_cast<double>(FLAGS_batch_size));
  check_positive("eval_batch_size", static_cast<double>(FLAGS_eval_batch_size));
  check_non_negative("augment_crop_padding", FLAGS_augment_crop_padding);
  check_positive("prefetch", FLAGS_prefetch);
  check_positive("loader_threads", FLAGS_loader_threads);
  check_positive("max_open_shards", FLAGS_max_open_shards);
  VMOE_CHECK(FLAGS_augment_min_area > 0 && FLAGS_augment_min_area <= 1,
             "--augment_min_area must be in (0, 1], got ", FLAGS_augment_min_area);
  VMOE_CHECK(FLAGS_eval_crop_fraction > 0 && FLAGS_eval_crop_fraction <= 1,
             "--eval_crop_fraction must be in (0, 1], got ", FLAGS_eval_crop_fraction);
  check_non_negative("mixup_alpha", FLAGS_mixup_alpha);
  parse_image_size(FLAGS_image_size);
  check_positive("learning_rate", FLAGS_learning_rate);
  check_non_negative("end_learning_rate", FLAGS_end_learning_rate);
  check_non_negative("warmup_steps", static_cast<double>(FLAGS_warmup_steps));
  check_non_negative("weight_decay", FLAGS_weight_decay);
  check_non_negative("grad_clip_norm", FLAGS_grad_clip_norm);
  VMOE_CHECK(FLAGS_adam_beta1 >= 0 && FLAGS_adam_beta1 < 1, "--adam_beta1 must be in [0, 1), got ",
             FLAGS_adam_beta1);
  VMOE_CHECK(FLAGS_adam_beta2 >= 0 && FLAGS_adam_beta2 < 1, "--adam_beta2 must be in [0, 1), got ",
             FLAGS_adam_beta2);
  VMOE_CHECK(FLAGS_momentum >= 0 && FLAGS_momentum < 1, "--momentum must be in [0, 1), got ",
             FLAGS_momentum);
  VMOE_CHECK(FLAGS_total_steps > 0 || FLAGS_num_epochs > 0,
             "one of --total_steps or --num_epochs must be positive");
  check_non_negative("total_steps", static_cast<double>(FLAGS_total_steps));
  check_positive("log_every", static_cast<double>(FLAGS_log_every));
  check_non_negative("eval_every", static_cast<double>(FLAGS_eval_every));
  parse_pooling(FLAGS_classifier);
  parse_optimizer(FLAGS_optimizer);
  parse_decay(FLAGS_lr_decay);
}

TrainConfig train_config_from_flags(int world) {
  validate_flags();
  DatasetInfo train = inspect_dataset(FLAGS_train_data);
  DatasetInfo eval = FLAGS_eval_data.empty() ? DatasetInfo{} : inspect_dataset(FLAGS_eval_data);
  // Encoded images have no fixed size: the loader crops and resizes them to
  // the model's resolution, --image_size or the training set's attributes.
  const auto [height, width] = parse_image_size(FLAGS_image_size);
  if (height > 0) {
    VMOE_CHECK(train.encoded, "--image_size is for encoded (JPEG/PNG) datasets; --train_data ",
               train.path, " holds raw ", train.height, "x", train.width, " images");
    train.height = height;
    train.width = width;
  }
  if (eval.encoded) {
    eval.height = train.height;
    eval.width = train.width;
  }
  TrainConfig c = config_from_flags(train, eval, world);
  // Training only: vmoe_eval (config_from_flags with a checkpoint's replayed
  // flags) runs forward passes, and reads the routers' choices after them.
  // Not in model_flags(): a run may resume with or without it.
  c.trainer.model.remat = FLAGS_remat;
  return c;
}

TrainConfig config_from_flags(const DatasetInfo& train_info, const DatasetInfo& eval_info,
                              int world) {
  TrainConfig c;
  c.train_info = train_info;
  c.eval_info = eval_info;
  const DatasetInfo& train = c.train_info;
  const DatasetInfo* eval = FLAGS_eval_data.empty() ? nullptr : &c.eval_info;
  if (eval != nullptr) {
    VMOE_CHECK(eval->height == train.height && eval->width == train.width &&
                   eval->channels == train.channels,
               "--eval_data ", eval->path, " has images of ", eval->height, "x", eval->width, "x",
               eval->channels, " but --train_data ", train.path, " has ", train.height, "x",
               train.width, "x", train.channels);
    VMOE_CHECK(eval->num_classes == train.num_classes && eval->multi_label == train.multi_label,
               "--eval_data ", eval->path, " has ", eval->num_classes,
               eval->multi_label ? " multi-label" : "", " classes but --train_data ", train.path,
               " has ", train.num_classes, train.multi_label ? " multi-label" : "");
  }
  VMOE_CHECK(FLAGS_batch_size <= train.size, "--batch_size=", FLAGS_batch_size,
             " is larger than the training set ", train.path, " (", train.size, " examples)");
  ViTConfig& m = c.trainer.model;
  m.image = {train.height, train.width, train.channels};
  m.patch_size = FLAGS_patch_size;
  m.hidden_size = FLAGS_hidden_size;
  m.num_layers = FLAGS_num_layers;
  m.num_heads = FLAGS_num_heads;
  m.mlp_dim = FLAGS_mlp_dim;
  m.num_classes = static_cast<int>(train.num_classes);
  m.multi_label = train.multi_label;
  m.classifier = parse_pooling(FLAGS_classifier);
  m.pre_logits_size = FLAGS_pre_logits_size;
  validate(m);

  OptimizerConfig& o = c.trainer.optimizer;
  o.kind = parse_optimizer(FLAGS_optimizer);
  o.beta1 = static_cast<float>(FLAGS_adam_beta1);
  o.beta2 = static_cast<float>(FLAGS_adam_beta2);
  o.momentum = static_cast<float>(FLAGS_momentum);
  o.weight_decay = static_cast<float>(FLAGS_weight_decay);
  o.grad_clip_norm = static_cast<float>(FLAGS_grad_clip_norm);

  MoeConfig& e = c.trainer.moe;
  e.layers = parse_moe_layers(FLAGS_moe_layers, m.num_layers);
  e.num_experts = FLAGS_num_experts;
  e.num_selected = FLAGS_num_selected;
  e.group_size = FLAGS_group_size;
  e.capacity_ratio = FLAGS_capacity_ratio;
  e.batch_priority = FLAGS_batch_priority;
  e.eval_capacity_ratio =
      is_default("eval_capacity_ratio") ? FLAGS_capacity_ratio : FLAGS_eval_capacity_ratio;
  e.eval_num_selected =
      is_default("eval_num_selected") ? FLAGS_num_selected : FLAGS_eval_num_selected;
  e.eval_batch_priority =
      is_default("eval_batch_priority") ? FLAGS_batch_priority : FLAGS_eval_batch_priority;
  // The run's flagfile (and its checkpoints) record the values in effect, so
  // a replay or vmoe_eval evaluates as this run did.
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.17g", e.eval_capacity_ratio);
  gflags::SetCommandLineOption("eval_capacity_ratio", ratio);
  gflags::SetCommandLineOption("eval_num_selected", std::to_string(e.eval_num_selected).c_str());
  gflags::SetCommandLineOption("eval_batch_priority", e.eval_batch_priority ? "true" : "false");
  e.noise_std = static_cast<float>(FLAGS_router_noise_std);
  e.importance_loss_weight = static_cast<float>(FLAGS_importance_loss_weight);
  e.load_loss_weight = static_cast<float>(FLAGS_load_loss_weight);
  e.gshard_loss_weight = static_cast<float>(FLAGS_gshard_loss_weight);
  e.z_loss_weight = static_cast<float>(FLAGS_router_z_loss_weight);
  e.routing = parse_routing(FLAGS_routing);
  e.router_input = parse_router_input(FLAGS_image_router_input);
  const bool image = e.routing == Routing::kImage;
  e.superclass_loss_weight = static_cast<float>(
      FLAGS_superclass_loss_weight >= 0 ? FLAGS_superclass_loss_weight
                                        : (image && train.has_superclass ? 0.3 : 0.0));
  VMOE_CHECK(e.superclass_loss_weight == 0 || (image && e.enabled()),
             "--superclass_loss_weight applies to --routing=image with --moe_layers set");
  VMOE_CHECK(e.superclass_loss_weight == 0 || train.has_superclass, "--superclass_loss_weight=",
             e.superclass_loss_weight, " needs /superclass in --train_data ", train.path,
             " (see vmoe_superclass)");
  for (const char* w : {"importance_loss_weight", "load_loss_weight", "gshard_loss_weight",
                        "router_z_loss_weight", "router_noise_std"}) {
    check_non_negative(w, std::stod(gflags::GetCommandLineFlagInfoOrDie(w).current_value));
  }
  VMOE_CHECK(FLAGS_batch_size % world == 0, "--batch_size=", FLAGS_batch_size,
             " must be divisible by the number of ranks (", world, ")");
  VMOE_CHECK(FLAGS_eval_batch_size % world == 0, "--eval_batch_size=", FLAGS_eval_batch_size,
             " must be divisible by the number of ranks (", world, ")");
  validate(e, m, FLAGS_batch_size / world);
  c.eval_capacity_sweep = parse_ratios(FLAGS_eval_capacity_sweep);
  VMOE_CHECK(c.eval_capacity_sweep.empty() || e.enabled(),
             "--eval_capacity_sweep needs a mixture-of-experts model (--moe_layers)");
  VMOE_CHECK((FLAGS_eval_batch_size / world) % e.group_size == 0 || !e.enabled(),
             "the per-rank evaluation batch (", FLAGS_eval_batch_size / world,
             " images) must be a multiple of --group_size=", e.group_size);

  VMOE_CHECK(FLAGS_backend == "cpu" || FLAGS_backend == "cuda",
             "--backend must be 'cpu' or 'cuda', got '", FLAGS_backend, "'");
  c.backend = FLAGS_backend;
  VMOE_CHECK(FLAGS_precision == "fp32" || FLAGS_precision == "bf16",
             "--precision must be 'fp32' or 'bf16', got '", FLAGS_precision, "'");
  c.trainer.precision = FLAGS_precision == "bf16" ? Precision::kBf16 : Precision::kFp32;
  c.device = FLAGS_device;
  VMOE_CHECK(!FLAGS_tf32 || FLAGS_backend == "cuda", "--tf32 applies to --backend=cuda (the CPU "
             "computes fp32 matrix products exactly)");
  c.tf32 = FLAGS_tf32;
  c.trainer.capture_step = FLAGS_capture_step;
  VMOE_CHECK(FLAGS_attention_pad_to >= -1, "--attention_pad_to must be -1, 0 or positive, got ",
             FLAGS_attention_pad_to);
  c.trainer.attention_pad_to = FLAGS_attention_pad_to >= 0 ? FLAGS_attention_pad_to
                               : FLAGS_backend == "cuda"   ? kGpuAttentionPadTo
                                                           : 0;
  VMOE_CHECK(FLAGS_expert_parallel >= 0, "--expert_parallel must be >= 0, got ",
             FLAGS_expert_parallel);
  c.expert_parallel = FLAGS_expert_parallel;
  c.expert_exchange = parse_exchange_mode(FLAGS_expert_exchange);
  check_positive("allreduce_bucket_mb", FLAGS_allreduce_bucket_mb);
  c.trainer.allreduce_bucket_floats =
      std::max<int64_t>(1, static_cast<int64_t>(FLAGS_allreduce_bucket_mb * (1 << 20) / 4));

  check_non_negative("checkpoint_every", static_cast<double>(FLAGS_checkpoint_every));
  check_positive("keep_checkpoints", FLAGS_keep_checkpoints);
  VMOE_CHECK(!(FLAGS_resume && !FLAGS_init_from.empty()),
             "--resume and --init_from exclude each other (resume continues a run; --init_from "
             "starts a new one from a checkpoint)");
  VMOE_CHECK(!FLAGS_resume || !FLAGS_run_dir.empty(),
             "--resume needs --run_dir (the run to continue)");
  check_non_negative("checkpoint_failures_allowed", FLAGS_checkpoint_failures_allowed);
  VMOE_CHECK(!(FLAGS_resume && FLAGS_overwrite),
             "--resume and --overwrite exclude each other (resume continues the checkpoints "
             "that --overwrite would remove)");
  c.overwrite = FLAGS_overwrite;
  check_non_negative("collective_timeout", FLAGS_collective_timeout);
  c.collective_timeout_s = FLAGS_collective_timeout;
  c.checkpoint_failures_allowed = FLAGS_checkpoint_failures_allowed;
  c.checkpoint_every = FLAGS_checkpoint_every;
  c.keep_checkpoints = FLAGS_keep_checkpoints;
  c.checkpoint_dir = FLAGS_checkpoint_dir;
  c.resume = FLAGS_resume;
  // A run or checkpoint folder means its newest complete checkpoint.
  if (!FLAGS_init_from.empty())
    c.init_from = resolve_checkpoints(FLAGS_init_from, "--init_from")[0];
  for (const std::string& pattern : split_commas(FLAGS_init_skip, true)) {
    try {
      c.init_skip.emplace_back(pattern);
    } catch (const std::regex_error& e) {
      fail("--init_skip: '", pattern, "' is not a regular expression: ", e.what());
    }
  }

  c.num_epochs = FLAGS_num_epochs;
  c.total_steps = FLAGS_total_steps > 0
                      ? FLAGS_total_steps
                      : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(
                                                 FLAGS_num_epochs * train.size / FLAGS_batch_size)));
  c.trainer.schedule = {.base = FLAGS_learning_rate,
                        .end = FLAGS_end_learning_rate,
                        .warmup_steps = FLAGS_warmup_steps,
                        .total_steps = c.total_steps,
                        .decay = parse_decay(FLAGS_lr_decay)};
  c.trainer.seed = FLAGS_seed;
  c.trainer.global_batch = FLAGS_batch_size;

  c.train_data = FLAGS_train_data;
  c.eval_data = FLAGS_eval_data;
  c.run_dir = FLAGS_run_dir;
  c.tensorboard_dir = FLAGS_tensorboard_dir;
  c.eval_batch_size = FLAGS_eval_batch_size;
  c.crop_padding = FLAGS_augment_crop_padding;
  c.flip = FLAGS_augment_flip;
  c.prefetch = FLAGS_prefetch;
  c.loader_threads = FLAGS_loader_threads;
  VMOE_CHECK(FLAGS_input_pixels == "auto" || FLAGS_input_pixels == "uint8" ||
                 FLAGS_input_pixels == "float",
             "--input_pixels must be 'auto', 'uint8' or 'float', got '", FLAGS_input_pixels, "'");
  c.uint8_pixels = FLAGS_input_pixels == "uint8" ||
                   (FLAGS_input_pixels == "auto" && FLAGS_backend == "cuda");
  c.min_area = static_cast<float>(FLAGS_augment_min_area);
  c.eval_crop_fraction = static_cast<float>(FLAGS_eval_crop_fraction);
  c.mixup_alpha = static_cast<float>(FLAGS_mixup_alpha);
  c.max_open_shards = FLAGS_max_open_shards;
  c.log_every = FLAGS_log_every;
  c.eval_every = FLAGS_eval_every;
  return c;
}

std::string model_flags(const TrainConfig& c) {
  const ViTConfig& m = c.trainer.model;
  const MoeConfig& e = c.trainer.moe;
  std::ostringstream out;
  out << "image=" << m.image.height << "x" << m.image.width << "x" << m.image.channels << "\n"
      << "num_classes=" << m.num_classes << "\nmulti_label=" << m.multi_label
      << "\npatch_size=" << m.patch_size << "\nhidden_size=" << m.hidden_size
      << "\nnum_layers=" << m.num_layers << "\nnum_heads=" << m.num_heads
      << "\nmlp_dim=" << m.mlp_dim << "\nclassifier=" << pooling_name(m.classifier)
      << "\nmoe_layers=" << format_moe_layers(e.layers) << "\n";
  // Only when set, so checkpoints of models without the layer still match.
  if (m.pre_logits_size > 0) out << "pre_logits_size=" << m.pre_logits_size << "\n";
  if (e.enabled()) {
    out << "num_experts=" << e.num_experts
        << "\nrouting=" << (e.routing == Routing::kToken ? "token" : "image") << "\n";
  }
  return out.str();
}

std::string optimizer_flags(const TrainConfig& c) {
  std::ostringstream out;
  out << "optimizer=" << (c.trainer.optimizer.kind == OptimizerKind::kAdam ? "adam" : "sgd")
      << "\nbatch_size=" << c.trainer.global_batch << "\nseed=" << c.trainer.seed << "\n";
  return out.str();
}

std::string flags_as_flagfile() {
  // Only this file's flags: gflags' own (--flagfile, --fromenv, ...) must not be replayed.
  std::vector<gflags::CommandLineFlagInfo> flags;
  gflags::GetAllFlags(&flags);
  std::string out;
  for (const auto& f : flags)
    if (f.filename == __FILE__) out += "--" + f.name + "=" + f.current_value + "\n";
  return out;
}

}  // namespace vmoe
