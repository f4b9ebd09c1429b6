// The Communicator over NCCL, on device memory (built with VMOE_HAVE_NCCL).
//
// Streams. The communicator runs its collectives on a stream of its own
// (non-blocking), ordered against the caller's compute stream with events:
// before each collective it records an event on the compute stream and makes
// the communication stream wait for it; after, it records an event on the
// communication stream and makes the compute stream wait for that. So a
// collective behaves as if it were queued on the compute stream: it sees all
// work queued there before the call, work queued after the call sees its
// result, and buffers may be freed or reused in the compute stream's order
// (also by stream-ordered allocators). No call on device memory blocks the
// host; synchronise the compute stream to read results on the host. The
// pattern is a fork/join, so it is also legal while the compute stream is
// being captured into a CUDA graph. A collective does not overlap the
// compute work queued around it (queue independent work on another stream
// for that); and communicators sharing a compute stream (the world and its
// splits) run their collectives one after another in program order, which
// rules out the deadlock of NCCL kernels of several communicators waiting
// on each other.
//
// Host memory. Small host buffers (a loss, counters, evaluation results) go
// through the same interface: every call looks at its pointers with
// cudaPointerGetAttributes, and pageable or pinned host memory
// (cudaMemoryTypeUnregistered / cudaMemoryTypeHost) is handed to an MPI twin
// of this communicator (same ranks, same order, its own MPI_Comm), which
// completes the call before returning, exactly as MpiCommunicator does. Host
// buffers are read when the call is made: the compute stream is not
// synchronised, so data copied into them asynchronously must have arrived
// (synchronise first). Device and managed memory go through NCCL. Both
// buffers of one call must be of the same kind, and every rank must pass the
// same kind (the routing is decided locally; a mismatch would deadlock).
//
// Devices. The communicator works on the device of the compute stream (the
// current device for the legacy default stream), which each rank must have
// to itself: NCCL refuses two ranks of one communicator on one GPU (see
// comm/device.h for choosing devices from the local rank). Calls switch to
// that device and back when another is current.
//
// Construction, split and destruction are collective over the ranks. Only
// one thread uses a communicator; only the main thread calls MPI.
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <memory>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace vmoe {

class NcclCommunicator final : public Communicator {
 public:
  // Over the ranks of `comm` (duplicated for the MPI twin, so its traffic
  // never mixes with the caller's), collectives ordered after and before
  // `compute_stream`. Collective: every rank of `comm` constructs it.
  NcclCommunicator(MPI_Comm comm, cudaStream_t compute_stream);
  NcclCommunicator(const MpiCommunicator& comm, cudaStream_t compute_stream)
      : NcclCommunicator(comm.handle(), compute_stream) {}
  // Waits for the communication stream, then frees the NCCL communicator,
  // the stream, the events and the MPI twin.
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int device() const { return device_; }
  ncclComm_t handle() const { return comm_; }
  cudaStream_t compute_stream() const { return compute_; }
  cudaStream_t comm_stream() const { return stream_; }
  // The MPI twin that host buffers go through.
  MpiCommunicator& host() { return *twin_; }

  void all_to_all_bytes(const void* send, void* recv, int64_t bytes_per_rank) override;
  void all_to_all(const float* send, float* recv, int64_t count_per_rank) override;
  void all_to_all(const int32_t* send, int32_t* recv, int64_t count_per_rank) override;
  void all_reduce(float* data, int64_t count, ReduceOp op) override;
  void all_reduce(double* data, int64_t count, ReduceOp op) override;
  void all_reduce(int64_t* data, int64_t count, ReduceOp op) override;
  void broadcast(void* data, int64_t bytes, int root) override;
  void all_gather(const void* send, void* recv, int64_t bytes_per_rank) override;
  // Waits for this communicator's queued collectives, then an MPI barrier.
  void barrier() override;
  // Splits the MPI twin, then builds an NcclCommunicator (with its own NCCL
  // unique id) on each new group, on the same compute stream.
  std::unique_ptr<Communicator> split(int color, int key) override;
  // ncclCommAbort (so no rank stays blocked in a kernel), then MPI_Abort.
  [[noreturn]] void abort(int exit_code) override;

 private:
  // device < 0: the compute stream's.
  NcclCommunicator(std::unique_ptr<MpiCommunicator> twin, cudaStream_t compute_stream, int device);
  void init(cudaStream_t compute_stream, int device);
  void release() noexcept;
  // True for host memory (goes to the twin), false for device memory; throws
  // for device memory of another device.
  bool on_host(const void* ptr, const char* what) const;
  // Both buffers of a call on the host (true) or on the device (false).
  bool on_host(const void* send, const void* recv, const char* what) const;
  template <typename Enqueue>
  void run(Enqueue&& enqueue);
  // The NCCL calls, on device memory.
  void device_all_to_all(const void* send, void* recv, int64_t count, ncclDataType_t type,
                         int64_t element_size);
  void device_all_reduce(void* data, int64_t count, ncclDataType_t type, ReduceOp op);

  std::unique_ptr<MpiCommunicator> twin_;
  int rank_ = 0, size_ = 1, device_ = 0;
  cudaStream_t compute_ = nullptr;   // the caller's
  cudaStream_t stream_ = nullptr;    // ours, for communication
  cudaEvent_t ready_ = nullptr;      // compute -> communication
  cudaEvent_t done_ = nullptr;       // communication -> compute
  ncclComm_t comm_ = nullptr;
};

}  // namespace vmoe
