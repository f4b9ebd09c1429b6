// OpenBLAS picks its kernels by CPU model, and Debian 12's OpenBLAS 0.3.21
// predates Zen 4/5: it runs its Haswell (AVX2) kernels there, while its
// SkylakeX (AVX-512) kernels are ~1.6x faster on those CPUs (see README).
// OpenBLAS reads OPENBLAS_CORETYPE only when it loads, so the executables
// call this first thing: when the CPU has AVX-512 F/BW/DQ/VL, OpenBLAS chose
// an AVX2 kernel set, and the user set no OPENBLAS_CORETYPE, the process
// re-executes itself once with OPENBLAS_CORETYPE=SkylakeX.
#pragma once

namespace vmoe {

void select_blas_kernels(char** argv);

}  // namespace vmoe
