// Error checks for CUDA runtime and cuBLAS calls: a failure throws
// vmoe::Error naming the call, the file:line and the library's message.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "core/check.h"

#define VMOE_CUDA_CHECK(call)                                                              \
  do {                                                                                     \
    const cudaError_t vmoe_err_ = (call);                                                  \
    if (vmoe_err_ != cudaSuccess)                                                          \
      ::vmoe::fail("CUDA error in ", #call, " (", __FILE__, ":", __LINE__, "): ",          \
                   cudaGetErrorString(vmoe_err_));                                         \
  } while (0)

#define VMOE_CUBLAS_CHECK(call)                                                            \
  do {                                                                                     \
    const cublasStatus_t vmoe_st_ = (call);                                                \
    if (vmoe_st_ != CUBLAS_STATUS_SUCCESS)                                                 \
      ::vmoe::fail("cuBLAS error in ", #call, " (", __FILE__, ":", __LINE__, "): ",        \
                   cublasGetStatusString(vmoe_st_));                                       \
  } while (0)

// After a kernel launch: launch-configuration errors surface here.
#define VMOE_CUDA_LAUNCH_CHECK() VMOE_CUDA_CHECK(cudaGetLastError())
