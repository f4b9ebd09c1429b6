// The CPU stand-in for the GPU path's world communicator. On GPUs the world
// that moves tensors is an NcclCommunicator and the MPI communicator of the
// same ranks is a separate object (ProcessGroups::host()); on the CPU both are
// usually one MpiCommunicator, so code that treats the world as MPI (a cast,
// MPI-IO or MPI calls on its handle) works there and breaks only on a GPU.
// Under this communicator the CPU path has the GPU path's shape: the world is
// not an MpiCommunicator and has MPI traffic of its own (a duplicate of the
// given communicator, like NCCL's MPI twin). Tests run whole programs under
// it (launch/compute.h: VMOE_TEST_STAND_IN_WORLD=1).
#pragma once

#include <memory>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace vmoe {

class StandInCommunicator final : public Communicator {
 public:
  // Over the ranks of `comm`, on a duplicate of it. Collective.
  explicit StandInCommunicator(const MpiCommunicator& comm) : mpi_(comm.duplicate()) {}

  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }

  void all_to_all_bytes(const void* send, void* recv, int64_t bytes_per_rank) override {
    mpi_->all_to_all_bytes(send, recv, bytes_per_rank);
  }
  void all_to_all(const float* send, float* recv, int64_t count_per_rank) override {
    mpi_->all_to_all(send, recv, count_per_rank);
  }
  void all_to_all(const int32_t* send, int32_t* recv, int64_t count_per_rank) override {
    mpi_->all_to_all(send, recv, count_per_rank);
  }
  void all_reduce(float* data, int64_t count, ReduceOp op) override {
    mpi_->all_reduce(data, count, op);
  }
  void all_reduce(double* data, int64_t count, ReduceOp op) override {
    mpi_->all_reduce(data, count, op);
  }
  void all_reduce(int64_t* data, int64_t count, ReduceOp op) override {
    mpi_->all_reduce(data, count, op);
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    mpi_->broadcast(data, bytes, root);
  }
  void all_gather(const void* send, void* recv, int64_t bytes_per_rank) override {
    mpi_->all_gather(send, recv, bytes_per_rank);
  }
  void barrier() override { mpi_->barrier(); }
  // Splits are stand-ins too, as an NCCL world's splits are NCCL.
  std::unique_ptr<Communicator> split(int color, int key) override {
    return std::unique_ptr<Communicator>(new StandInCommunicator(mpi_->split_mpi(color, key)));
  }
  [[noreturn]] void abort(int exit_code) override { mpi_->abort(exit_code); }

 private:
  explicit StandInCommunicator(std::unique_ptr<MpiCommunicator> mpi) : mpi_(std::move(mpi)) {}
  std::unique_ptr<MpiCommunicator> mpi_;
};

}  // namespace vmoe
