// Which x86-64 instructions the CPU backend's hot loops run with.
//
// Binaries are portable: host code targets a baseline (VMOE_CPU_ARCH,
// x86-64-v2 by default), and each loop in core/cpu/cpu_loops.cpp is also
// compiled for x86-64-v3 (AVX2, FMA) and x86-64-v4 (AVX-512). The dynamic
// loader picks the best copy the CPU supports (GCC's target_clones, an ifunc),
// so one build runs on any x86-64 node and at full width on each.
// VMOE_NATIVE=ON (-march=native) or VMOE_CPU_DISPATCH=OFF build one copy.
#pragma once

#if defined(VMOE_CPU_DISPATCH) && !defined(VMOE_CPU_SINGLE_ISA) && defined(__x86_64__) && \
    defined(__GNUC__) && !defined(__clang__)
#define VMOE_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define VMOE_CPU_CLONED 1
#else
#define VMOE_CPU_CLONES
#define VMOE_CPU_CLONED 0
#endif

namespace vmoe {

// The instruction set the hot loops use on this CPU: "AVX-512 (x86-64-v4)",
// "AVX2 (x86-64-v3)", or the baseline's name.
const char* cpu_loops_isa();

// The best of those levels this CPU supports, whatever the build.
const char* cpu_isa_level();

}  // namespace vmoe
