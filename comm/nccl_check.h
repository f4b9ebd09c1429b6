// Error checks for NCCL and CUDA runtime calls made by comm/: a failure
// throws std::runtime_error naming the call, the file:line and the library's
// message. comm/ may not include core/ (see README.md), so these do not use
// core/cuda_check.h; VMOE_COMM_CUDA_CHECK has its own name so both headers
// can be included in one file.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <stdexcept>
#include <string>

namespace vmoe::detail {

[[noreturn]] inline void nccl_fail(ncclResult_t result, const char* call, const char* file,
                                   int line) {
  std::string message = std::string("NCCL error in ") + call + " (" + file + ":" +
                        std::to_string(line) + "): " + ncclGetErrorString(result);
  // The last error's details (which peer, which resource), when NCCL has them.
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') message += std::string(" - ") + last;
  throw std::runtime_error(message);
}

[[noreturn]] inline void comm_cuda_fail(cudaError_t error, const char* call, const char* file,
                                        int line) {
  throw std::runtime_error(std::string("CUDA error in ") + call + " (" + file + ":" +
                           std::to_string(line) + "): " + cudaGetErrorString(error));
}

}  // namespace vmoe::detail

#define VMOE_NCCL_CHECK(call)                                                         \
  do {                                                                                \
    const ncclResult_t vmoe_nccl_res_ = (call);                                       \
    if (vmoe_nccl_res_ != ncclSuccess)                                                \
      ::vmoe::detail::nccl_fail(vmoe_nccl_res_, #call, __FILE__, __LINE__);           \
  } while (0)

#define VMOE_COMM_CUDA_CHECK(call)                                                    \
  do {                                                                                \
    const cudaError_t vmoe_comm_cuda_err_ = (call);                                   \
    if (vmoe_comm_cuda_err_ != cudaSuccess)                                           \
      ::vmoe::detail::comm_cuda_fail(vmoe_comm_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)
