// A run's checkpoint directory: ckpt-<step>.h5 files, written atomically
// (a temporary name, flushed and fsynced, then renamed, then the directory
// fsynced), the newest `keep` kept. A process killed during a write leaves a
// .tmp file that is never read, and the previous checkpoints intact; a write
// that fails (a full disk) removes its .tmp and harms no earlier checkpoint.
// Pruning only ever removes checkpoints older than the one just written.
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
  // Before training (collective over `host`): the folder exists or can be
  // made, a file can be written and flushed in it, and it has room for one
  // checkpoint of `bytes`. Errors name the folder and what is wrong.
  void check_writable(MpiCommunicator& host, int64_t bytes) const;
  // Collective over groups.host(): checks for room, writes, publishes, prunes
  // this run's older checkpoints. Returns the published path. Throws
  // CheckpointWriteError (every rank) when it cannot write; then no .tmp is
  // left and every earlier checkpoint is as it was. (Tests:
  // VMOE_TEST_SKIP_ROOM_CHECK=1 skips the room check, so that the write
  // itself meets a full disk.)
  std::string save(ParamStore& store, Optimizer* optimizer, const CheckpointState& state,
                   ProcessGroups& groups, int abort_after = -1);
  // Complete checkpoints, newest first.
  std::vector<std::string> list() const;
  // Rank 0 removes every checkpoint (and leftover .tmp) in the folder, for a
  // run that starts over in it (--overwrite); collective over `host`.
  void remove_all(MpiCommunicator& host) const;

  // Resume: loads the newest checkpoint every rank can read completely, falling
  // back to older ones (calling `warn` with why) and renaming each it could
  // not read to <name>.damaged, so that it is neither read nor counted again.
  // `check` may reject a checkpoint by throwing (e.g. other model flags):
  // that error is final. Collective over `host`; nullopt when there is no
  // readable checkpoint.
  std::optional<CheckpointState> load_latest(
      ParamStore& store, Optimizer* optimizer, MpiCommunicator& host,
      const std::function<void(const CheckpointState&)>& check,
      const std::function<void(const std::string&)>& warn);

 private:
  std::string dir_;
  int keep_;
};

}  // namespace vmoe
