// The collective operations distributed training needs, behind one interface
// so the MPI (host memory) and NCCL (device memory) implementations are
// interchangeable. Buffers are in the memory the implementation works on.
// Every rank of the communicator must call a collective with the same sizes.
#pragma once

#include <cstdint>
#include <memory>

namespace vmoe {

enum class ReduceOp { kSum, kMax };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // recv[p] = chunk `rank()` of rank p's send buffer: both hold size() chunks
  // of `bytes_per_rank` bytes. send and recv must not overlap.
  virtual void all_to_all_bytes(const void* send, void* recv, int64_t bytes_per_rank) = 0;
  // Typed, so implementations move them as what they are (MPI_FLOAT, ncclFloat).
  virtual void all_to_all(const float* send, float* recv, int64_t count_per_rank) = 0;
  virtual void all_to_all(const int32_t* send, int32_t* recv, int64_t count_per_rank) = 0;
  // bfloat16 payloads (mixed precision): moved as bytes, nothing is reduced.
  virtual void all_to_all(const uint16_t* send, uint16_t* recv, int64_t count_per_rank) {
    all_to_all_bytes(send, recv, count_per_rank * static_cast<int64_t>(sizeof(uint16_t)));
  }

  // In place, element-wise over all ranks.
  virtual void all_reduce(float* data, int64_t count, ReduceOp op) = 0;
  virtual void all_reduce(double* data, int64_t count, ReduceOp op) = 0;
  virtual void all_reduce(int64_t* data, int64_t count, ReduceOp op) = 0;

  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // recv = the ranks' `bytes_per_rank`-byte send buffers, in rank order.
  virtual void all_gather(const void* send, void* recv, int64_t bytes_per_rank) = 0;
  virtual void barrier() = 0;

  // Ranks with the same color form a new communicator, ordered by key.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Stops every process of the job (after the caller reported why).
  [[noreturn]] virtual void abort(int exit_code) = 0;
};

// Shorthand for reducing one scalar.
template <typename T>
T all_reduce_value(Communicator& comm, T value, ReduceOp op = ReduceOp::kSum) {
  comm.all_reduce(&value, 1, op);
  return value;
}

}  // namespace vmoe
