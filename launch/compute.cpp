#include "launch/compute.h"

#include <cstdlib>
#include <cstring>

#include "comm/stand_in_communicator.h"
#include "comm/watchdog.h"
#include "core/check.h"
#include "core/cpu/cpu_backend.h"
#ifdef VMOE_HAVE_CUDA
#include "comm/device.h"
#include "comm/nccl_communicator.h"
#include "core/cuda/cuda_backend.h"
#endif

namespace vmoe {
namespace {

// The backend's host waits, as the collective watchdog sees them.
class WatchdogWaits : public WaitObserver {
 public:
  void wait_begins(const char* what) override { CollectiveWatchdog::instance().enter(what); }
  void wait_ends() override { CollectiveWatchdog::instance().leave(); }
};

WatchdogWaits watchdog_waits;

}  // namespace

Compute::Compute(const std::string& backend, int device, MpiCommunicator& mpi_world)
    : mpi_world_(&mpi_world) {
  if (backend == "cpu") {
    backend_ = std::make_unique<CpuBackend>();
    const char* stand_in = std::getenv("VMOE_TEST_STAND_IN_WORLD");
    if (stand_in != nullptr && std::strcmp(stand_in, "1") == 0)
      device_world_ = std::make_unique<StandInCommunicator>(mpi_world);
    return;
  }
  VMOE_CHECK(backend == "cuda", "--backend must be 'cpu' or 'cuda', got '", backend, "'");
#ifdef VMOE_HAVE_CUDA
  VMOE_CHECK(cuda_device_count() > 0,
             "--backend=cuda: this process sees no GPU (check CUDA_VISIBLE_DEVICES and the "
             "driver), rank ", mpi_world.rank());
  const int chosen = choose_device(device);
  // Before NCCL, whose own message for this is "Duplicate GPU detected".
  const std::string shared =
      shared_device_error(gather_rank_devices(mpi_world, describe_device(chosen)), device >= 0);
  VMOE_CHECK(shared.empty(), shared);
  auto gpu = std::make_unique<CudaBackend>(chosen);
  gpu->set_wait_observer(&watchdog_waits);
  device_world_ = std::make_unique<NcclCommunicator>(mpi_world, gpu->stream());
  backend_ = std::move(gpu);
#else
  (void)device;
  fail("--backend=cuda: this build has no CUDA backend (configure with -DVMOE_CUDA=ON and the "
       "CUDA toolkit)");
#endif
}

Compute::~Compute() = default;

}  // namespace vmoe
