// Marks functions that compile for both host and device, so the CPU build
// runs (and tests) the exact arithmetic the CUDA kernels run.
#pragma once

#if defined(__CUDACC__)
#define VMOE_HD __host__ __device__ __forceinline__
#else
#define VMOE_HD inline
#endif
