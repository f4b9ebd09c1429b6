#include "checkpoints/checkpoint_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "checkpoints/disk_space.h"
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

namespace {

// Runs `fn` on rank 0 and makes its outcome every rank's: an error there is
// thrown (as an AgreedError of type E, with rank 0's message) on all ranks.
template <typename E = AgreedError, typename Fn>
void on_rank0(MpiCommunicator& host, Fn&& fn) {
  char message[1024] = {0};
  if (host.rank() == 0) {
    try {
      fn();
    } catch (const std::exception& e) {
      std::snprintf(message, sizeof message, "%s", e.what());
      if (message[0] == '\0') message[0] = '?';
    }
  }
  host.broadcast(message, sizeof message, 0);
  if (message[0] != '\0') throw E(message);
}

// Throws unless `dir` has room for `bytes`.
void check_room(const std::string& dir, int64_t bytes, const std::string& what) {
  const int64_t free = free_bytes(dir);
  VMOE_CHECK(free < 0 || free >= bytes, what, ": No space left on device: ", dir, " has ",
             mib(free), " free, a checkpoint needs about ", mib(bytes));
}

}  // namespace

void CheckpointDir::check_writable(MpiCommunicator& host, int64_t bytes) const {
  on_rank0(host, [&] {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    VMOE_CHECK(!ec, "checkpoint folder ", dir_, ": cannot create it: ", ec.message());
    const std::string probe = (fs::path(dir_) / ".write_test").string();
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    VMOE_CHECK(fd >= 0, "checkpoint folder ", dir_, ": cannot write in it: ", std::strerror(errno));
    const char byte = 0;
    const bool ok = ::write(fd, &byte, 1) == 1 && ::fsync(fd) == 0;
    const int error = errno;
    ::close(fd);
    ::unlink(probe.c_str());
    VMOE_CHECK(ok, "checkpoint folder ", dir_, ": cannot write in it: ", std::strerror(error));
    check_room(dir_, bytes, "checkpoint folder " + dir_);
  });
}

void CheckpointDir::remove_all(MpiCommunicator& host) const {
  on_rank0(host, [&] {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      const std::string name = entry.path().filename().string();
      if (step_of(name) >= 0 || (name.rfind("ckpt-", 0) == 0 && name.ends_with(".h5.tmp")))
        fs::remove(entry.path(), ec);
    }
  });
}

std::string CheckpointDir::save(ParamStore& store, Optimizer* optimizer,
                                const CheckpointState& state, ProcessGroups& groups,
                                int abort_after) {
  MpiCommunicator& host = groups.host();
  const std::string path = path_for(state.step), tmp = path + ".tmp";
  const int64_t needed = planned_checkpoint_bytes(store, optimizer);
  // Tests: VMOE_TEST_SKIP_ROOM_CHECK=1 lets the write itself meet the full disk.
  const bool check = std::getenv("VMOE_TEST_SKIP_ROOM_CHECK") == nullptr;
  on_rank0<CheckpointWriteError>(host, [&] {
    fs::create_directories(dir_);
    if (check) check_room(dir_, needed, "cannot write checkpoint " + path);
  });
  try {
    write_checkpoint(tmp, store, optimizer, state, groups, abort_after);
  } catch (const CheckpointWriteError&) {
    // Every rank is here, the file closed: take the partial file away.
    if (host.rank() == 0) {
      std::error_code ec;
      fs::remove(tmp, ec);
    }
    host.barrier();
    throw;
  }
  on_rank0<CheckpointWriteError>(host, [&] {
    fsync_path(tmp);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    VMOE_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
    fsync_path(dir_);
    // Only this run's older checkpoints: never the one just written, nor a
    // newer one (which --resume would have renamed away had it been damaged).
    std::vector<std::string> older;
    for (const std::string& p : list())
      if (step_of(fs::path(p).filename().string()) < state.step) older.push_back(p);
    for (size_t i = static_cast<size_t>(keep_ - 1); i < older.size(); ++i) fs::remove(older[i], ec);
  });
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
         "; renamed it to " + fs::path(path).filename().string() +
         ".damaged, trying the previous checkpoint");
    if (host.rank() == 0) {
      std::error_code ec;
      fs::rename(path, path + ".damaged", ec);
    }
    host.barrier();
  }
  return std::nullopt;
}

}  // namespace vmoe
