// Agreeing on failure: a step every rank runs may fail on some of them only
// (a full disk seen by one writer, a corrupt file in one rank's slice). To
// go on together, the ranks vote after the step and all act on the first
// failing rank's error.
#pragma once

#include <string>

#include "comm/communicator.h"

namespace vmoe {

struct FirstError {
  std::string message;  // empty: no rank failed
  int rank = -1;        // the lowest rank that failed
};

// Collective: each rank passes its own error ("" if none); every rank gets
// the lowest failing rank's message (up to 2 KiB) and rank.
FirstError first_error(Communicator& comm, const std::string& error);

}  // namespace vmoe
