#include "core/cpu/blas_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "core/check.h"

namespace vmoe {
namespace {

// OpenBLAS x86-64 kernel sets written for AVX2 and FMA or later.
bool is_modern_core(const char* core) {
  for (const char* name :
       {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "Excavator"}) {
    if (strcasecmp(core, name) == 0) return true;
  }
  return false;
}

// The kernels for this CPU's instruction set, or null where generic code is right.
const char* kernels_for_this_cpu() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

const char* isa_name() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx512f")) return "AVX-512";
  if (__builtin_cpu_supports("avx2")) return "AVX2";
#endif
  return "this";
}

std::string version() {
  // openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..."
  const std::string config = openblas_get_config();
  const size_t space = config.find(' ', config.find(' ') + 1);
  return config.substr(0, space);
}

}  // namespace

void choose_blas_kernels(char** argv) {
  const char* off = std::getenv("VMOE_BLAS_AUTO");
  if (off != nullptr && std::strcmp(off, "0") == 0) return;
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice, or ours already
  const char* core = openblas_get_corename();
  const char* wanted = kernels_for_this_cpu();
  if (wanted == nullptr || core == nullptr || is_modern_core(core)) return;
  setenv("VMOE_BLAS_DETECTED", core, 1);
  setenv("OPENBLAS_CORETYPE", wanted, 1);
  execv("/proc/self/exe", argv);
  // Not re-executed (no /proc?): run on, and the header warns.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("VMOE_BLAS_DETECTED");
}

std::string openblas_core() {
  return openblas_get_corename();
}

std::string blas_kernels_summary() {
  const char* core = openblas_get_corename();
  std::string line = str_cat(version(), ", ", core, " kernels");
  if (const char* detected = std::getenv("VMOE_BLAS_DETECTED")) {
    line += str_cat(" (OpenBLAS detected ", detected, ", generic on this ", isa_name(),
                    " CPU; set OPENBLAS_CORETYPE to choose)");
  }
  return line;
}

std::string blas_kernels_warning() {
  const char* core = openblas_get_corename();
  if (kernels_for_this_cpu() == nullptr || is_modern_core(core)) return "";
  return str_cat("warning: OpenBLAS runs its generic ", core, " kernels on this ", isa_name(),
                 " CPU, several times slower; set OPENBLAS_CORETYPE=", kernels_for_this_cpu());
}

}  // namespace vmoe
