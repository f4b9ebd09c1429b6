// main() of the multi-rank GoogleTest executables: runs the tests on every
// rank of MPI_COMM_WORLD and returns the worst result over all ranks, so
// ctest fails when any rank fails. Only rank 0 prints passing output.
#include <gtest/gtest.h>

#include "comm/mpi_communicator.h"

int main(int argc, char** argv) {
  vmoe::MpiRuntime mpi(&argc, &argv);
  vmoe::MpiCommunicator world;
  ::testing::InitGoogleTest(&argc, argv);
  if (world.rank() != 0) {
    // Other ranks report failures only.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int64_t failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  world.all_reduce(&failed, 1, vmoe::ReduceOp::kMax);
  if (world.rank() == 0 && failed) std::fprintf(stderr, "a test failed on some rank\n");
  return static_cast<int>(failed);
}
