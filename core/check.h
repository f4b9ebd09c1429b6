// Errors: one exception type whose message is meant for the user.
//
// VMOE_CHECK(cond, parts...) throws vmoe::Error with the parts concatenated;
// the message should say what (flag, file, dataset) was expected and what was
// found. VMOE_ASSERT is for internal invariants and adds file:line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace vmoe {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An error every rank of a job throws together, at the same point (the ranks
// agreed on it): the job can stop without MPI_Abort, one rank reporting it.
class AgreedError : public Error {
 public:
  using Error::Error;
};

template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(str_cat(parts...));
}

}  // namespace vmoe

#define VMOE_CHECK(cond, ...)                      \
  do {                                             \
    if (!(cond)) ::vmoe::fail(__VA_ARGS__);        \
  } while (0)

#define VMOE_ASSERT(cond)                                                             \
  do {                                                                                \
    if (!(cond)) ::vmoe::fail("internal error: ", #cond, " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)
