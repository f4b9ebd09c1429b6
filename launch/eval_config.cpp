#include "launch/eval_config.h"

#include <gflags/gflags.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "checkpoints/checkpoint_dir.h"
#include "core/check.h"
#include "datasets/dataset_info.h"
#include "launch/flag_lists.h"

DEFINE_string(checkpoint, "", "The checkpoint to evaluate: a ckpt-<step>.h5 file, a checkpoint "
              "directory, or a run directory (its newest complete checkpoint).");
DEFINE_string(out_dir, "", "Where eval.json, sweep.json, fewshot.json and routing/ go (default: "
              "<run directory>/eval for a checkpoint in <run>/checkpoints, else "
              "<checkpoint's folder>/eval).");
DEFINE_bool(routing_analysis, true, "MoE models: write the class x expert routing frequencies "
            "of every --eval_data set to <out_dir>/routing/<dataset>/<router>.csv.");
DEFINE_string(fewshot, "",
              "Few-shot linear evaluation targets, comma-separated: a folder with "
              "train.h5 and test.h5, or train-*.h5 and test-*.h5 shards (see vmoe_import), or "
              "TRAIN:TEST (each a file or a glob).");
DEFINE_string(fewshot_shots, "1,5,10,25", "Few-shot: examples per class.");
DEFINE_int32(fewshot_seeds, 3, "Few-shot: seeds (example selections); mean and std over them.");
DEFINE_string(fewshot_l2, "1024", "Few-shot: ridge l2 strength(s), comma-separated, or 'sweep' "
              "for 2^-10 .. 2^19.");

namespace vmoe {
namespace {

namespace fs = std::filesystem;

// vmoe_train flags a user may set for an evaluation; the rest come from the checkpoint.
const std::set<std::string> kEvalKnobs = {"eval_data",
                                          "eval_batch_size",
                                          "eval_capacity_ratio",
                                          "eval_num_selected",
                                          "eval_batch_priority",
                                          "eval_capacity_sweep",
                                          "expert_parallel",
                                          "expert_exchange",
                                          "prefetch",
                                          "tensorboard_dir",
                                          "backend",
                                          "device",
                                          "precision",
                                          "tf32",
                                          "collective_timeout"};
// Flags of the training run that an evaluation must not replay.
// (--tf32 is not replayed either: an evaluation is exact fp32 unless it asks.)
const std::set<std::string> kNotReplayed = {
    "eval_capacity_sweep", "resume", "init_from",          "init_skip",       "run_dir",
    "checkpoint_dir",      "tf32",   "collective_timeout", "tensorboard_dir", "capture_step"};

bool is_train_flag(const gflags::CommandLineFlagInfo& f) {
  return f.filename.find("train_config.cpp") != std::string::npos;
}

std::map<std::string, std::string> parse_lines(const std::string& text, bool dashes) {
  std::map<std::string, std::string> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (dashes) {
      if (line.rfind("--", 0) != 0) continue;
      line = line.substr(2);
    }
    const size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

// The training set's shape, as the checkpoint recorded it.
DatasetInfo trained_shape(const CheckpointState& s, const std::string& checkpoint) {
  const std::map<std::string, std::string> m = parse_lines(s.model_flags, false);
  DatasetInfo info;
  info.path = checkpoint;
  info.size = int64_t{1} << 40;  // unknown; only bounds the batch size
  const auto image = m.find("image"), classes = m.find("num_classes");
  VMOE_CHECK(image != m.end() && classes != m.end(), checkpoint,
             ": the checkpoint does not record its image shape and class count");
  VMOE_CHECK(std::sscanf(image->second.c_str(), "%dx%dx%d", &info.height, &info.width,
                         &info.channels) == 3,
             checkpoint, ": unreadable image shape '", image->second, "'");
  info.num_classes = std::stoll(classes->second);
  info.multi_label = m.count("multi_label") && m.at("multi_label") == "1";
  info.has_superclass = true;  // only training reads super-classes; let the flags stand
  for (int64_t c = 0; c < info.num_classes; ++c) info.class_names.push_back(std::to_string(c));
  return info;
}

}  // namespace

std::vector<std::string> resolve_checkpoints(const std::string& path, const std::string& flag) {
  VMOE_CHECK(!path.empty(), flag, " is required (a checkpoint file, or a run directory)");
  VMOE_CHECK(fs::exists(path), flag, "=", path, ": no such file or directory");
  if (!fs::is_directory(path)) return {path};
  const std::string dir = fs::is_directory(fs::path(path) / "checkpoints")
                              ? (fs::path(path) / "checkpoints").string()
                              : path;
  const std::vector<std::string> found = CheckpointDir(dir, 1).list();
  VMOE_CHECK(!found.empty(), flag, "=", path, ": no complete checkpoint (ckpt-<step>.h5) in ", dir);
  return found;
}

FewShotTarget parse_fewshot_target(const std::string& spec) {
  FewShotTarget t;
  const size_t colon = spec.find(':');
  if (colon != std::string::npos) {
    t.train = spec.substr(0, colon);
    t.test = spec.substr(colon + 1);
    t.name = fs::path(t.train).parent_path().filename().string();
    if (t.name.empty()) t.name = fs::path(t.train).stem().string();
  } else {
    // train.h5 and test.h5, or the shards vmoe_import and vmoe_synth write.
    const bool single = fs::exists(fs::path(spec) / "train.h5");
    t.train = (fs::path(spec) / (single ? "train.h5" : "train-*.h5")).string();
    t.test = (fs::path(spec) / (single ? "test.h5" : "test-*.h5")).string();
    t.name = fs::path(spec).lexically_normal().filename().string();
    if (t.name.empty()) t.name = fs::path(spec).lexically_normal().parent_path().filename().string();
  }
  for (const std::string* f : {&t.train, &t.test}) {
    bool found = false;
    try {
      const std::vector<std::string> files = expand_dataset_files(*f);
      found = std::all_of(files.begin(), files.end(),
                          [](const std::string& x) { return fs::is_regular_file(x); });
    } catch (const Error&) {
    }
    VMOE_CHECK(found, "--fewshot=", spec, ": ", *f,
               " not found (give a folder with train.h5 and test.h5 or train-*.h5 and test-*.h5 "
               "shards, or TRAIN:TEST, each a file or a glob)");
  }
  return t;
}

std::string dataset_name(const std::string& path) {
  // A shard list or glob is named after its first item, pattern characters
  // and the separators they leave at the end dropped: "data/synth/test-*.h5"
  // -> "synth_test".
  const fs::path p(path.substr(0, path.find(',')));
  const std::string folder = p.parent_path().filename().string();
  std::string name = folder.empty() ? p.stem().string() : folder + "_" + p.stem().string();
  std::erase_if(name, [](char ch) { return ch == '*' || ch == '?' || ch == '[' || ch == ']'; });
  while (name.size() > 1 && (name.back() == '-' || name.back() == '_' || name.back() == '.'))
    name.pop_back();
  return name;
}

EvalConfig eval_config_from_flags(int world) {
  EvalConfig e;
  // The newest checkpoint whose attributes are sound (a single file must be).
  std::vector<std::string> candidates = resolve_checkpoints(FLAGS_checkpoint);
  for (size_t i = 0;; ++i) {
    try {
      e.state = read_checkpoint_state(candidates[i]);
    } catch (const std::exception& err) {
      if (i + 1 == candidates.size()) throw;
      e.warnings.push_back("cannot read " + candidates[i] + ": " + err.what() +
                           "; trying the previous checkpoint");
      continue;
    }
    e.checkpoint = candidates[i];
    e.fallbacks.assign(candidates.begin() + static_cast<std::ptrdiff_t>(i) + 1, candidates.end());
    break;
  }
  // Replay the run's flags under whatever this command line sets.
  const std::map<std::string, std::string> saved = parse_lines(e.state.flagfile, true);
  std::vector<gflags::CommandLineFlagInfo> flags;
  gflags::GetAllFlags(&flags);
  for (const gflags::CommandLineFlagInfo& f : flags) {
    if (!is_train_flag(f)) continue;
    VMOE_CHECK(f.is_default || kEvalKnobs.count(f.name), "--", f.name,
               " is a training flag: vmoe_eval takes the model from the checkpoint (it accepts "
               "--eval_data, --eval_batch_size, --eval_capacity_ratio, --eval_num_selected, "
               "--eval_batch_priority, --eval_capacity_sweep, --expert_parallel, "
               "--expert_exchange, --prefetch, "
               "--backend, --device, --precision, --tf32, --collective_timeout, "
               "--tensorboard_dir)");
    const auto it = saved.find(f.name);
    if (f.is_default && it != saved.end() && !kNotReplayed.count(f.name))
      gflags::SetCommandLineOption(f.name.c_str(), it->second.c_str());
  }
  e.eval_data = split_commas(gflags::GetCommandLineFlagInfoOrDie("eval_data").current_value, true);
  gflags::SetCommandLineOption("eval_data", "");
  // The batch: evaluation batches; the model, optimiser and schedule flags are the run's.
  gflags::SetCommandLineOption(
      "batch_size", gflags::GetCommandLineFlagInfoOrDie("eval_batch_size").current_value.c_str());
  validate_flags();
  e.run = config_from_flags(trained_shape(e.state, e.checkpoint), DatasetInfo{}, world);
  e.out_dir = FLAGS_out_dir;
  if (e.out_dir.empty()) {
    const fs::path folder = fs::path(e.checkpoint).parent_path();
    e.out_dir = ((folder.filename() == "checkpoints" ? folder.parent_path() : folder) / "eval")
                    .string();
  }
  e.routing_analysis = FLAGS_routing_analysis;
  for (const std::string& spec : split_commas(FLAGS_fewshot, true))
    e.fewshot.push_back(parse_fewshot_target(spec));
  e.fewshot_settings.shots = parse_shots(FLAGS_fewshot_shots, "fewshot_shots");
  e.fewshot_settings.l2 = parse_l2(FLAGS_fewshot_l2, "fewshot_l2");
  VMOE_CHECK(FLAGS_fewshot_seeds > 0, "--fewshot_seeds must be positive, got ", FLAGS_fewshot_seeds);
  e.fewshot_settings.seeds = FLAGS_fewshot_seeds;
  VMOE_CHECK(!e.eval_data.empty() || !e.fewshot.empty(),
             "nothing to evaluate: give --eval_data and/or --fewshot (the checkpoint's run had "
             "no --eval_data)");
  return e;
}

}  // namespace vmoe
