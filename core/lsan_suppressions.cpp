// LeakSanitizer settings, compiled into every executable of an
// address-sanitized build: Open MPI, PMIx and HDF5 keep allocations alive
// until process exit by design, which LeakSanitizer would report as leaks
// in every program that initialises MPI. Our own code is not suppressed.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libmpi.so\n"
         "leak:libopen-pal.so\n"
         "leak:libopen-rte.so\n"
         "leak:libpmix.so\n"
         "leak:libhwloc.so\n"
         "leak:libevent\n"
         "leak:mca_\n"
         "leak:libhdf5\n";
}

// Open MPI's libraries have no frame pointers: the fast unwinder loses the
// allocating frames (reported as "<unknown module>"), so the suppressions
// above could not match. The slow unwinder finds them.
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }

// The list of suppressions used would be the last line a program prints;
// the error tests check that line.
extern "C" const char* __lsan_default_options() { return "print_suppressions=0"; }
