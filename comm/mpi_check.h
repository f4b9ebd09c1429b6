// Turns an MPI error code into an exception with MPI's own message (comm/
// reports errors as std::runtime_error; it does not depend on core/).
#pragma once

#include <mpi.h>

#include <stdexcept>
#include <string>

namespace vmoe {

inline void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw std::runtime_error(std::string("MPI ") + what + " failed: " +
                           std::string(text, static_cast<size_t>(len)));
}

}  // namespace vmoe
