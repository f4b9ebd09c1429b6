// Helpers of the multi-rank tests (their main() is mpi_test_main.cpp).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "comm/mpi_communicator.h"

namespace vmoe::testing {

// MPI_COMM_WORLD as a Communicator (MPI is initialised by main()).
inline MpiCommunicator& world() {
  static MpiCommunicator comm;
  return comm;
}

// A directory every rank shares (rank 0 names and creates it, named after
// the test), removed at the end.
struct SharedDir {
  std::string path;
  explicit SharedDir(const std::string& prefix = "vmoe_mpi_test") {
    char name[256] = {0};
    if (world().rank() == 0) {
      namespace fs = std::filesystem;
      // A parameterised test's name has a '/' ("Test/Param"): as a path it
      // would nest, and removing the leaf would leave the parent behind.
      std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
      std::replace(test.begin(), test.end(), '/', '_');
      const std::string p =
          (fs::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()) + "_" + test))
              .string();
      fs::remove_all(p);
      fs::create_directories(p);
      p.copy(name, sizeof name - 1);
    }
    world().broadcast(name, sizeof name, 0);
    path = name;
  }
  ~SharedDir() {
    world().barrier();
    if (world().rank() == 0) std::filesystem::remove_all(path);
  }
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
};

}  // namespace vmoe::testing
