// A run's checkpoint directory: ckpt-<step>.h5 files, written atomically
// (a temporary name, flushed and fsynced, then renamed, then the directory
// fsynced), the newest `keep` kept. A process killed during a write leaves a
// .tmp file that is never read, and the previous checkpoints intact.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"

namespace vmoe {

class CheckpointDir {
 public:
  CheckpointDir(std::string dir, int keep);

  const std::string& dir() const { return dir_; }
  std::string path_for(int64_t step) const;
  // Collective over groups.host(): writes, publishes, prunes old checkpoints.
  // Returns the published path.
  std::string save(ParamStore& store, Optimizer* optimizer, const CheckpointState& state,
                   ProcessGroups& groups, int abort_after = -1);
  // Complete checkpoints, newest first.
  std::vector<std::string> list() const;

  // Resume: loads the newest checkpoint every rank can read completely, falling
  // back to older ones (calling `warn` with why). `check` may reject a
  // checkpoint by throwing (e.g. other model flags): that error is final.
  // Collective over `host`; nullopt when there is no checkpoint at all.
  std::optional<CheckpointState> load_latest(
      ParamStore& store, Optimizer* optimizer, MpiCommunicator& host,
      const std::function<void(const CheckpointState&)>& check,
      const std::function<void(const std::string&)>& warn);

 private:
  std::string dir_;
  int keep_;
};

}  // namespace vmoe
