#include "launch/mpi_program.h"

#include <gflags/gflags.h>

#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>

#include "comm/agreement.h"
#include "core/cpu/blas_kernels.h"

DECLARE_bool(help);

namespace vmoe {

int run_mpi_program(int argc, char** argv, const MpiProgram& program) {
  if (program.matrix_products) choose_blas_kernels(argv);  // may restart it, so before MPI
  MpiRuntime mpi(&argc, &argv);
  MpiCommunicator world;
  gflags::SetUsageMessage(program.usage);
  gflags::SetVersionString("0.1.0");
  // --help lists the program's flags, not gflags' own.
  gflags::ParseCommandLineNonHelpFlags(&argc, &argv, true);
  if (FLAGS_help) {
    if (world.rank() == 0) gflags::ShowUsageWithFlagsRestrict(argv[0], program.help_source);
    return 0;
  }
  gflags::HandleCommandLineHelpFlags();
  if (argc > 1) {
    std::fprintf(stderr, "%s: error: unexpected argument '%s' (flags are --name=value)\n",
                 program.name, argv[1]);
    return 1;
  }
  try {
    try {
      return program.run(world);
    } catch (const std::bad_alloc&) {
      // The planner's pre-flight check (launch/preflight.h) should have said
      // this before; memory can still run out for reasons it cannot see.
      throw std::runtime_error(
          "out of host memory (std::bad_alloc): the model, the batch or the loader's buffers "
          "do not fit; vmoe_plan with the same flags shows what a run needs");
    }
  } catch (const AgreedError& e) {
    // Every rank is here with the same message: one line, no MPI_Abort.
    if (world.rank() == 0) std::fprintf(stderr, "%s: error: %s\n", program.name, e.what());
    return 1;
  } catch (const std::exception& e) {
    // One rank failing stops the job: no rank may wait in a collective forever.
    if (world.size() > 1) {
      std::fprintf(stderr, "%s: error (rank %d of %d): %s\n", program.name, world.rank(),
                   world.size(), e.what());
      std::fflush(stderr);
      world.abort(1);
    }
    std::fprintf(stderr, "%s: error: %s\n", program.name, e.what());
    return 1;
  }
}

void agree_on(MpiCommunicator& world, const std::string& error) {
  const FirstError first = first_error(world, error);
  if (first.message.empty()) return;
  throw AgreedError(world.size() > 1 && first.rank != 0
                        ? str_cat(first.message, " (rank ", first.rank, ")")
                        : first.message);
}

}  // namespace vmoe
