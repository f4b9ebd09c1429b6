#include "launch/preflight.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "core/check.h"
#include "launch/mpi_program.h"
#include "launch/planner.h"

namespace vmoe {
namespace {

// MemAvailable of /proc/meminfo in bytes (-1 if unknown).
int64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    int64_t kib = -1;
    fields >> kib;
    return kib < 0 ? -1 : kib * 1024;
  }
  return -1;
}

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1 << 30));
  return buf;
}

}  // namespace

int64_t memory_for_one_rank(Backend& backend, int ranks_on_node) {
  const int64_t device = backend.device_memory_free();
  if (device >= 0) return device;
  const int64_t node = mem_available();
  return node < 0 ? -1 : node / std::max(1, ranks_on_node);
}

void check_memory(const TrainConfig& c, Backend& backend, MpiCommunicator& world) {
  const int on_node = world.split_by_node()->size();
  const int64_t available = memory_for_one_rank(backend, on_node);
  agreed(world, [&] {
    ClusterShape cluster;
    cluster.ranks = world.size();
    cluster.expert_parallel = c.expert_parallel;
    // As ProcessGroups decides, for a world all on this node.
    cluster.exchange_in_place =
        c.backend == "cpu" && c.expert_exchange == ExchangeMode::kAuto && on_node == world.size();
    const Plan plan = plan_run(c.trainer, cluster);
    const double needed = c.trainer.model.remat ? plan.memory_remat.total() : plan.memory.total();
    if (available < 0 || needed <= static_cast<double>(available)) return;
    fail("the model needs about ", gib(needed), " per rank (", plan.params.per_rank,
         " parameters on each, vmoe_plan's estimate of parameters, gradients, optimizer state "
         "and activations) but ",
         gib(static_cast<double>(available)), " are available to each ",
         backend.device_memory_free() >= 0 ? "GPU" : "of this node's ranks",
         c.trainer.model.remat ? "" : " (--remat keeps less)",
         "; see vmoe_plan --flagfile=... for the breakdown");
  });
}

}  // namespace vmoe
