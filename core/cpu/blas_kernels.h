// Which OpenBLAS kernels run every matrix product on the CPU, and a fix for
// when OpenBLAS's own CPU detection falls back to generic code: a release
// older than the CPU (Debian 12's 0.3.21 on Sapphire Rapids or Zen 5, say)
// picks its SSE3 "Prescott" kernels on a CPU with AVX-512, several times
// slower at our GEMM shapes. OpenBLAS reads OPENBLAS_CORETYPE only when it is
// loaded, so the fix is to set it and start the program again.
#pragma once

#include <string>

namespace vmoe {

// Call first in main(), before MPI or any thread starts. Where OpenBLAS chose
// generic kernels on a CPU with AVX2 and OPENBLAS_CORETYPE is not set, sets it
// to the kernels for this CPU's instruction set and re-executes the program
// (same pid, arguments and environment otherwise). Returns in every other
// case, and if the re-execution fails. VMOE_BLAS_AUTO=0 turns it off.
void choose_blas_kernels(char** argv);

// The name of the kernels OpenBLAS runs ("SkylakeX", "Prescott", ...).
std::string openblas_core();

// For run headers, e.g. "OpenBLAS 0.3.21, SkylakeX kernels (OpenBLAS
// detected Prescott, generic on this AVX-512 CPU; OPENBLAS_CORETYPE overrides)".
std::string blas_kernels_summary();

// A warning when the kernels in use are generic on a CPU with AVX2; empty when not.
std::string blas_kernels_warning();

}  // namespace vmoe
