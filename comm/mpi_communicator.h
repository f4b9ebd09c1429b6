// The Communicator over MPI, on host memory. MpiRuntime initialises MPI
// (also as a single process without mpirun) and finalises it; only the main
// thread calls MPI (MPI_THREAD_FUNNELED).
#pragma once

#include <mpi.h>

#include "comm/communicator.h"

namespace vmoe {

class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  static bool initialized();
};

class MpiCommunicator final : public Communicator {
 public:
  // Wraps `comm` (MPI_COMM_WORLD by default); frees it if `owned`.
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD, bool owned = false);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm handle() const { return comm_; }
  // A communicator of the same ranks whose messages never match this one's
  // (MPI_Comm_dup); owned by the result. Collective.
  std::unique_ptr<MpiCommunicator> duplicate() const;
  // split() with the concrete type. Collective.
  std::unique_ptr<MpiCommunicator> split_mpi(int color, int key) const;
  // The ranks that share this rank's node (shared memory). Collective.
  std::unique_ptr<MpiCommunicator> split_by_node() const;

  void all_to_all_bytes(const void* send, void* recv, int64_t bytes_per_rank) override;
  void all_to_all(const float* send, float* recv, int64_t count_per_rank) override;
  void all_to_all(const int32_t* send, int32_t* recv, int64_t count_per_rank) override;
  void all_reduce(float* data, int64_t count, ReduceOp op) override;
  void all_reduce(double* data, int64_t count, ReduceOp op) override;
  void all_reduce(int64_t* data, int64_t count, ReduceOp op) override;
  void broadcast(void* data, int64_t bytes, int root) override;
  void all_gather(const void* send, void* recv, int64_t bytes_per_rank) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  [[noreturn]] void abort(int exit_code) override;

 private:
  void all_to_all(const void* send, void* recv, int64_t count, MPI_Datatype type, int64_t size);
  void all_reduce(void* data, int64_t count, MPI_Datatype type, ReduceOp op);
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace vmoe
