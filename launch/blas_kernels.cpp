#include "launch/blas_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace vmoe {

void select_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user decided
  const char* core = openblas_get_corename();
  const bool avx2_kernels =
      core != nullptr && (std::strcmp(core, "Haswell") == 0 || std::strcmp(core, "Zen") == 0);
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (!avx2_kernels || !avx512) return;
  setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
  execv("/proc/self/exe", argv);
  // execv failed (no /proc?): carry on with the kernels we have.
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace vmoe
