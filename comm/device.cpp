#include "comm/device.h"

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "comm/mpi_check.h"

namespace vmoe {
namespace {

// A non-negative integer environment variable, or -1 when unset or malformed.
int env_index(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return -1;
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  if (errno != 0 || *end != '\0' || value < 0 || value > INT_MAX) return -1;
  return static_cast<int>(value);
}


}  // namespace

int local_rank() {
  if (const int rank = env_index("OMPI_COMM_WORLD_LOCAL_RANK"); rank >= 0) return rank;
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return 0;  // a single process
  int world_rank = 0;
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank), "MPI_Comm_rank");
  MPI_Comm node;
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL,
                                &node),
            "MPI_Comm_split_type");
  int rank = 0;
  const int code = MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  check_mpi(code, "MPI_Comm_rank");
  return rank;
}

int choose_device(int requested) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: reported below
    count = 0;
  }
  if (count <= 0)
    throw std::runtime_error(
        "no CUDA device is visible to this process" +
        (error != cudaSuccess ? std::string(" (") + cudaGetErrorString(error) + ")" : std::string()));
  if (requested >= 0) {
    if (requested >= count)
      throw std::runtime_error("CUDA device " + std::to_string(requested) +
                               " was requested, but this process sees " + std::to_string(count) +
                               (count == 1 ? " device" : " devices"));
    return requested;
  }
  return local_rank() % count;
}

RankDevice describe_device(int device) {
  RankDevice d;
  char node[256] = {0};
  if (gethostname(node, sizeof node - 1) == 0) d.node = node;
  d.index = device;
  if (cudaGetDeviceCount(&d.visible) != cudaSuccess) (void)cudaGetLastError();
  cudaDeviceProp prop{};
  const cudaError_t error = cudaGetDeviceProperties(&prop, device);
  if (error != cudaSuccess)
    throw std::runtime_error("cannot read the properties of CUDA device " + std::to_string(device) +
                             ": " + cudaGetErrorString(error));
  static const char* hex = "0123456789abcdef";
  for (unsigned char byte : prop.uuid.bytes) {
    d.uuid += hex[byte >> 4];
    d.uuid += hex[byte & 15];
  }
  return d;
}

}  // namespace vmoe
