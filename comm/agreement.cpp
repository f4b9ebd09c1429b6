#include "comm/agreement.h"

#include <cstdint>
#include <cstdio>

namespace vmoe {

FirstError first_error(Communicator& comm, const std::string& error) {
  // The lowest failing rank, as size - rank (0: none failed).
  const int64_t n = comm.size();
  const int64_t first =
      all_reduce_value(comm, error.empty() ? int64_t{0} : n - comm.rank(), ReduceOp::kMax);
  if (first == 0) return {};
  const int root = static_cast<int>(n - first);
  char message[2048] = {0};
  if (comm.rank() == root) std::snprintf(message, sizeof message, "%s", error.c_str());
  comm.broadcast(message, sizeof message, root);
  if (message[0] == '\0') message[0] = '?';  // an exception without a message
  return {message, root};
}

}  // namespace vmoe
