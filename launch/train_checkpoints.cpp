#include "launch/train_checkpoints.h"

#include <cstdio>

#include "core/check.h"
#include "launch/mpi_program.h"

namespace vmoe {
namespace {

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

}  // namespace

CheckpointState checkpoint_state(const TrainConfig& c, Trainer& trainer, ProcessGroups& groups) {
  CheckpointState s;
  s.step = trainer.step();
  s.seed = c.trainer.seed;
  s.global_batch = c.trainer.global_batch;
  s.model_flags = model_flags(c);
  s.optimizer_flags = optimizer_flags(c);
  s.flagfile = flags_as_flagfile();
  s.world = groups.world().size();
  s.expert_parallel = groups.placement().ep_size;
  return s;
}

int64_t resume(CheckpointDir& dir, const TrainConfig& c, Trainer& trainer, ProcessGroups& groups,
               const Say& say) {
  const auto start = Clock::now();
  auto check = [&](const CheckpointState& saved) {
    std::vector<std::string> diff = differing_flags(saved.model_flags, model_flags(c));
    const std::vector<std::string> opt = differing_flags(saved.optimizer_flags, optimizer_flags(c));
    diff.insert(diff.end(), opt.begin(), opt.end());
    VMOE_CHECK(diff.empty(), "cannot resume from ", dir.dir(), ": the model or optimiser differs "
               "from the checkpoint's: ", join(diff, "; "));
  };
  const std::optional<CheckpointState> state =
      dir.load_latest(trainer.params(), &trainer.optimizer(), groups.host(), check,
                      [&](const std::string& why) { say("warning: " + why + "\n"); });
  if (!state) {
    say("resume: no checkpoint in " + dir.dir() + ", starting from scratch\n");
    return 0;
  }
  trainer.optimizer().set_steps_taken(state->step);
  char line[256];
  std::snprintf(line, sizeof line,
                "resumed at step %lld from %s (written by %lld ranks) in %.2fs\n",
                static_cast<long long>(state->step), dir.path_for(state->step).c_str(),
                static_cast<long long>(state->world), seconds_since(start));
  say(line);
  return state->step;
}

void refuse_foreign_checkpoints(const CheckpointDir& dir, MpiCommunicator& host) {
  // Rank 0's listing decides, as for --resume.
  char newest[512] = {0};
  int64_t count = 0;
  if (host.rank() == 0) {
    const std::vector<std::string> found = dir.list();
    count = static_cast<int64_t>(found.size());
    if (!found.empty()) std::snprintf(newest, sizeof newest, "%s", found.front().c_str());
  }
  host.broadcast(&count, sizeof count, 0);
  host.broadcast(newest, sizeof newest, 0);
  if (count > 0) {  // every rank sees the same count: they throw together
    throw AgreedError(
        str_cat("the checkpoint folder ", dir.dir(), " already holds ", count,
                " checkpoint(s) of an earlier run (newest: ", newest,
                "); pass --resume to continue "
                "that run, --overwrite to remove them, or another --run_dir/--checkpoint_dir"));
  }
}

void init_from(const TrainConfig& c, Trainer& trainer, const Say& say) {
  const auto start = Clock::now();
  const CheckpointState saved = read_checkpoint_state(c.init_from);
  const LoadReport r = load_checkpoint(c.init_from, trainer.params(), nullptr,
                                       {.optimizer = false, .skip = c.init_skip, .fine_tune = true});
  char line[256];
  std::snprintf(line, sizeof line, "initialised from %s (step %lld) in %.2fs: %zu parameters\n",
                c.init_from.c_str(), static_cast<long long>(saved.step), seconds_since(start),
                r.loaded.size() - r.reinitialised.size() - r.resized.size());
  say(line);
  if (!r.skipped.empty()) say("  kept fresh (--init_skip): " + join(r.skipped, ", ") + "\n");
  if (!r.reinitialised.empty())
    say("  re-initialised (another class count): " + join(r.reinitialised, ", ") + "\n");
  if (!r.resized.empty()) say("  resized to the new patch grid: " + join(r.resized, ", ") + "\n");
}

}  // namespace vmoe
