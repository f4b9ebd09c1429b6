// What vmoe_train and vmoe_eval share around their work: MPI set-up, gflags
// parsing (--help lists only the program's own flags), stray-argument
// errors, and the rule that one rank failing stops the whole job, with that
// rank's message, so no rank waits in a collective forever.
#pragma once

#include <chrono>
#include <functional>

#include "comm/mpi_communicator.h"

namespace vmoe {

struct MpiProgram {
  const char* name;         // "vmoe_train": prefixes every error line
  const char* usage;        // gflags usage message
  const char* help_source;  // --help lists flags defined in files matching this
  std::function<int(MpiCommunicator& world)> run;
};

// The whole of main(): returns the exit code.
int run_mpi_program(int argc, char** argv, const MpiProgram& program);

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace vmoe
