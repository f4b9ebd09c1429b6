#include "comm/device_assignment.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace vmoe {
namespace {

// A fixed-size record per rank, so one all-gather carries them all.
struct Packed {
  char node[256];
  char uuid[64];
  int index, visible;
};

void copy_text(const std::string& text, char* out, size_t size) {
  std::memset(out, 0, size);
  std::memcpy(out, text.data(), std::min(text.size(), size - 1));
}

}  // namespace

std::string shared_device_error(const std::vector<RankDevice>& ranks, bool device_flag) {
  for (size_t b = 1; b < ranks.size(); ++b) {
    for (size_t a = 0; a < b; ++a) {
      const RankDevice& x = ranks[a];
      const RankDevice& y = ranks[b];
      if (x.node != y.node || x.uuid != y.uuid) continue;
      std::string same = "GPU " + std::to_string(x.index);
      if (y.index != x.index)
        same += " (index " + std::to_string(y.index) + " on rank " + std::to_string(b) + ")";
      std::string message = "--backend=cuda needs one GPU per rank: ranks " + std::to_string(a) +
                            " and " + std::to_string(b) + " both use " + same + " on " + x.node +
                            " (" + std::to_string(x.visible) + " visible); ";
      if (device_flag)
        return message +
               "--device gives every rank the same GPU index: leave it unset (each "
               "rank then takes its local rank modulo the visible GPUs) or start 1 "
               "rank per node";
      return message + "start at most " + std::to_string(x.visible) + " rank" +
             (x.visible == 1 ? "" : "s") + " per node or set --device";
    }
  }
  return "";
}

std::vector<RankDevice> gather_rank_devices(MpiCommunicator& comm, const RankDevice& mine) {
  Packed packed{};
  copy_text(mine.node, packed.node, sizeof packed.node);
  copy_text(mine.uuid, packed.uuid, sizeof packed.uuid);
  packed.index = mine.index;
  packed.visible = mine.visible;
  std::vector<Packed> all(static_cast<size_t>(comm.size()));
  comm.all_gather(&packed, all.data(), sizeof packed);
  std::vector<RankDevice> out;
  for (const Packed& p : all) out.push_back({p.node, p.uuid, p.index, p.visible});
  return out;
}

}  // namespace vmoe
