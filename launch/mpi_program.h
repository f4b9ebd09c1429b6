// What vmoe_train and vmoe_eval share around their work: MPI set-up, gflags
// parsing (--help lists only the program's own flags), stray-argument
// errors, and the rule that one rank failing stops the whole job, with that
// rank's message, so no rank waits in a collective forever. An error all
// ranks agreed on (AgreedError) is printed once, by rank 0, and the job ends
// normally with status 1; any other error prints its rank's line and aborts.
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <type_traits>

#include "comm/mpi_communicator.h"
#include "core/check.h"

namespace vmoe {

struct MpiProgram {
  const char* name;         // "vmoe_train": prefixes every error line
  const char* usage;        // gflags usage message
  const char* help_source;  // --help lists flags defined in files matching this
  std::function<int(MpiCommunicator& world)> run;
  bool matrix_products = false;  // uses BLAS: worth choose_blas_kernels' restart
};

// The whole of main(): returns the exit code.
int run_mpi_program(int argc, char** argv, const MpiProgram& program);

// agreed()'s vote: throws AgreedError on every rank if `error` is set on any.
void agree_on(MpiCommunicator& world, const std::string& error);

// Runs `fn` on every rank and agrees on the outcome: if it threw anywhere,
// every rank throws AgreedError with the lowest failing rank's message. For
// work with no collective inside (flag validation, file checks), which may
// fail on some ranks only (a file one node cannot see).
template <typename Fn>
auto agreed(MpiCommunicator& world, Fn&& fn) -> decltype(fn()) {
  std::string error;
  using Result = decltype(fn());
  if constexpr (std::is_void_v<Result>) {
    try {
      fn();
    } catch (const std::exception& e) {
      error = e.what();
    }
    agree_on(world, error);
  } else {
    Result result{};
    try {
      result = fn();
    } catch (const std::exception& e) {
      error = e.what();
    }
    agree_on(world, error);
    return result;
  }
}

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace vmoe
