#include "checkpoints/checkpoint_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/check.h"

namespace vmoe {
namespace {

namespace fs = std::filesystem;

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  VMOE_CHECK(fd >= 0, "cannot open ", path, " to flush it to disk");
  const int rc = ::fsync(fd);
  ::close(fd);
  VMOE_CHECK(rc == 0, "cannot flush ", path, " to disk");
}

// The step of "ckpt-<step>.h5", or -1.
int64_t step_of(const std::string& filename) {
  long long step = -1;
  char tail[8] = {0};
  if (std::sscanf(filename.c_str(), "ckpt-%lld.%7s", &step, tail) != 2) return -1;
  return std::string(tail) == "h5" ? step : -1;
}

}  // namespace

CheckpointDir::CheckpointDir(std::string dir, int keep) : dir_(std::move(dir)), keep_(keep) {
  VMOE_CHECK(keep_ >= 1, "--keep_checkpoints must be >= 1, got ", keep_);
}

std::string CheckpointDir::path_for(int64_t step) const {
  char name[64];
  std::snprintf(name, sizeof name, "ckpt-%010lld.h5", static_cast<long long>(step));
  return (fs::path(dir_) / name).string();
}

std::vector<std::string> CheckpointDir::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && entry.is_regular_file()) found.emplace_back(step, entry.path().string());
  }
  std::sort(found.rbegin(), found.rend());
  std::vector<std::string> out;
  for (auto& [step, path] : found) out.push_back(path);
  return out;
}

std::string CheckpointDir::save(ParamStore& store, Optimizer* optimizer,
                                const CheckpointState& state, ProcessGroups& groups,
                                int abort_after) {
  Communicator& world = groups.host();
  const std::string path = path_for(state.step), tmp = path + ".tmp";
  if (world.rank() == 0) fs::create_directories(dir_);
  world.barrier();
  write_checkpoint(tmp, store, optimizer, state, groups, abort_after);
  if (world.rank() == 0) {
    fsync_path(tmp);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    VMOE_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
    fsync_path(dir_);
    const std::vector<std::string> all = list();
    for (size_t i = static_cast<size_t>(keep_); i < all.size(); ++i) fs::remove(all[i], ec);
  }
  world.barrier();  // every rank returns once the checkpoint is published
  return path;
}

std::optional<CheckpointState> CheckpointDir::load_latest(
    ParamStore& store, Optimizer* optimizer, MpiCommunicator& host,
    const std::function<void(const CheckpointState&)>& check,
    const std::function<void(const std::string&)>& warn) {
  // Rank 0's listing decides, so every rank tries the same files.
  std::vector<std::string> candidates = list();
  int64_t count = host.rank() == 0 ? static_cast<int64_t>(candidates.size()) : 0;
  host.broadcast(&count, sizeof count, 0);
  VMOE_CHECK(static_cast<int64_t>(candidates.size()) == count,
             "rank ", host.rank(), " sees ", candidates.size(), " checkpoints in ", dir_,
             ", rank 0 sees ", count, ": the directory must be shared by every rank");
  for (const std::string& path : candidates) {
    CheckpointState state;
    std::string error;
    try {
      state = read_checkpoint_state(path);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (error.empty()) check(state);  // a mismatch is the user's to fix, not a fallback
    if (error.empty()) {
      try {
        load_checkpoint(path, store, optimizer, {.optimizer = true});
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    // Every rank must have loaded its whole shard.
    const int64_t ok = all_reduce_value(host, int64_t{error.empty() ? 1 : 0}, ReduceOp::kSum);
    if (ok == host.size()) return state;
    warn("cannot resume from " + path + (error.empty() ? " (another rank failed)" : ": " + error) +
         "; trying the previous checkpoint");
  }
  return std::nullopt;
}

}  // namespace vmoe
