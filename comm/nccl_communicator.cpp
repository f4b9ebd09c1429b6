#include "comm/nccl_communicator.h"

#include "comm/watchdog.h"

#include <stdexcept>
#include <string>
#include <utility>

#include "comm/nccl_check.h"

namespace vmoe {
namespace {

// Makes `device` current for the scope and restores the previous device.
// Never throws: callers that need the device check error().
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) noexcept {
    int current = -1;
    error_ = cudaGetDevice(&current);
    if (error_ == cudaSuccess && current != device) {
      error_ = cudaSetDevice(device);
      if (error_ == cudaSuccess) previous_ = current;
    }
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
};

// Declares a DeviceGuard for `device` and throws if it could not be selected.
#define VMOE_COMM_DEVICE_SCOPE(device)                                                      \
  DeviceGuard vmoe_device_guard_(device);                                                   \
  if (vmoe_device_guard_.error() != cudaSuccess)                                            \
  ::vmoe::detail::comm_cuda_fail(vmoe_device_guard_.error(), "cudaSetDevice", __FILE__,     \
                                 __LINE__)

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::kSum ? ncclSum : ncclMax; }

// The device `stream` belongs to; the current device for the special handles.
int stream_device(cudaStream_t stream) {
  int device = 0;
#if CUDART_VERSION >= 12080
  if (stream != nullptr && stream != cudaStreamLegacy && stream != cudaStreamPerThread) {
    VMOE_COMM_CUDA_CHECK(cudaStreamGetDevice(stream, &device));
    return device;
  }
#else
  (void)stream;
#endif
  VMOE_COMM_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

// A copy of `comm` for the twin: its messages never match the caller's.
std::unique_ptr<MpiCommunicator> duplicate(MPI_Comm comm) {
  if (!MpiRuntime::initialized()) throw std::logic_error("NcclCommunicator before MpiRuntime");
  return MpiCommunicator(comm).duplicate();
}

// Throws for negative sizes; true when there is nothing to move.
bool empty(int64_t n, const char* what) {
  if (n < 0)
    throw std::invalid_argument(std::string("NcclCommunicator::") + what + ": negative size " +
                                std::to_string(n));
  return n == 0;
}

}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm comm, cudaStream_t compute_stream)
    : NcclCommunicator(duplicate(comm), compute_stream, /*device=*/-1) {}

NcclCommunicator::NcclCommunicator(std::unique_ptr<MpiCommunicator> twin,
                                   cudaStream_t compute_stream, int device)
    : twin_(std::move(twin)) {
  try {
    init(compute_stream, device);
  } catch (...) {
    release();
    throw;
  }
}

NcclCommunicator::~NcclCommunicator() { release(); }

void NcclCommunicator::init(cudaStream_t compute_stream, int device) {
  compute_ = compute_stream;
  rank_ = twin_->rank();
  size_ = twin_->size();
  // Local set-up first; if it fails on any rank, every rank throws (rather
  // than the others waiting forever for the unique id).
  std::string error;
  ncclUniqueId id{};
  try {
    device_ = device >= 0 ? device : stream_device(compute_stream);
    VMOE_COMM_DEVICE_SCOPE(device_);
    VMOE_COMM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    VMOE_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    VMOE_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    if (rank_ == 0) VMOE_NCCL_CHECK(ncclGetUniqueId(&id));
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "unknown error";
  }
  int64_t failed = error.empty() ? 0 : 1;
  twin_->all_reduce(&failed, 1, ReduceOp::kMax);
  if (failed != 0)
    throw std::runtime_error("NcclCommunicator set-up failed" +
                             (error.empty() ? std::string(" on another rank") : ": " + error));
  twin_->broadcast(&id, sizeof id, 0);
  VMOE_COMM_DEVICE_SCOPE(device_);
  ncclComm_t comm = nullptr;
  VMOE_NCCL_CHECK(ncclCommInitRank(&comm, size_, id, rank_));
  comm_ = comm;
}

void NcclCommunicator::release() noexcept {
  DeviceGuard guard(device_);
  if (comm_ != nullptr) {
    // Let queued collectives finish; after an error, abort instead (finalize
    // could wait for peers that will never come).
    bool healthy = stream_ == nullptr || cudaStreamSynchronize(stream_) == cudaSuccess;
    ncclResult_t async = ncclSuccess;
    healthy = healthy && ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async == ncclSuccess;
    if (healthy && ncclCommFinalize(comm_) == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    comm_ = nullptr;
  }
  if (done_ != nullptr) cudaEventDestroy(done_);
  if (ready_ != nullptr) cudaEventDestroy(ready_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  done_ = ready_ = nullptr;
  stream_ = nullptr;
}

bool NcclCommunicator::on_host(const void* ptr, const char* what) const {
  cudaPointerAttributes attributes{};
  const cudaError_t error = cudaPointerGetAttributes(&attributes, ptr);
  if (error == cudaErrorInvalidValue) {
    // Runtimes before CUDA 11 said this for pointers they do not know.
    (void)cudaGetLastError();
    return true;
  }
  if (error != cudaSuccess)
    detail::comm_cuda_fail(error, "cudaPointerGetAttributes", __FILE__, __LINE__);
  switch (attributes.type) {
    case cudaMemoryTypeUnregistered:
    case cudaMemoryTypeHost:
      return true;
    case cudaMemoryTypeManaged:
      return false;
    case cudaMemoryTypeDevice:
      if (attributes.device != device_)
        throw std::invalid_argument(std::string("NcclCommunicator::") + what +
                                    ": a buffer on CUDA device " +
                                    std::to_string(attributes.device) +
                                    ", but the communicator works on device " +
                                    std::to_string(device_));
      return false;
  }
  return false;
}

bool NcclCommunicator::on_host(const void* send, const void* recv, const char* what) const {
  const bool send_host = on_host(send, what), recv_host = on_host(recv, what);
  if (send_host != recv_host)
    throw std::invalid_argument(std::string("NcclCommunicator::") + what +
                                ": the send buffer is in " + (send_host ? "host" : "device") +
                                " memory and the receive buffer in " +
                                (recv_host ? "host" : "device") + " memory; both must be either");
  return send_host;
}

// Queues `enqueue` (NCCL calls on stream_) between the compute stream's
// past and future work.
template <typename Enqueue>
void NcclCommunicator::run(Enqueue&& enqueue) {
  VMOE_COMM_DEVICE_SCOPE(device_);
  VMOE_COMM_CUDA_CHECK(cudaEventRecord(ready_, compute_));
  VMOE_COMM_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  enqueue();
  VMOE_COMM_CUDA_CHECK(cudaEventRecord(done_, stream_));
  VMOE_COMM_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
}

void NcclCommunicator::device_all_to_all(const void* send, void* recv, int64_t count,
                                         ncclDataType_t type, int64_t element_size) {
  run([&] {
    const char* from = static_cast<const char*>(send);
    char* to = static_cast<char*>(recv);
    const int64_t chunk = count * element_size;
    const size_t n = static_cast<size_t>(count);
    VMOE_NCCL_CHECK(ncclGroupStart());
    // Every call up to ncclGroupEnd, even after an error, so the group closes.
    ncclResult_t queued = ncclSuccess;
    for (int p = 0; p < size_ && queued == ncclSuccess; ++p) {
      queued = ncclSend(from + p * chunk, n, type, p, comm_, stream_);
      if (queued == ncclSuccess) queued = ncclRecv(to + p * chunk, n, type, p, comm_, stream_);
    }
    const ncclResult_t ended = ncclGroupEnd();
    if (queued != ncclSuccess)
      detail::nccl_fail(queued, "ncclSend/ncclRecv (all-to-all)", __FILE__, __LINE__);
    if (ended != ncclSuccess)
      detail::nccl_fail(ended, "ncclGroupEnd() (all-to-all)", __FILE__, __LINE__);
  });
}

void NcclCommunicator::all_to_all_bytes(const void* send, void* recv, int64_t bytes) {
  if (empty(bytes, "all_to_all_bytes")) return;
  if (on_host(send, recv, "all_to_all_bytes")) return twin_->all_to_all_bytes(send, recv, bytes);
  device_all_to_all(send, recv, bytes, ncclUint8, 1);
}

void NcclCommunicator::all_to_all(const float* send, float* recv, int64_t count) {
  if (empty(count, "all_to_all")) return;
  if (on_host(send, recv, "all_to_all")) return twin_->all_to_all(send, recv, count);
  device_all_to_all(send, recv, count, ncclFloat, sizeof(float));
}

void NcclCommunicator::all_to_all(const int32_t* send, int32_t* recv, int64_t count) {
  if (empty(count, "all_to_all")) return;
  if (on_host(send, recv, "all_to_all")) return twin_->all_to_all(send, recv, count);
  device_all_to_all(send, recv, count, ncclInt32, sizeof(int32_t));
}

void NcclCommunicator::device_all_reduce(void* data, int64_t count, ncclDataType_t type,
                                         ReduceOp op) {
  run([&] {
    VMOE_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(count), type, nccl_op(op),
                                  comm_, stream_));
  });
}

void NcclCommunicator::all_reduce(float* data, int64_t count, ReduceOp op) {
  if (empty(count, "all_reduce")) return;
  if (on_host(data, "all_reduce")) return twin_->all_reduce(data, count, op);
  device_all_reduce(data, count, ncclFloat, op);
}

void NcclCommunicator::all_reduce(double* data, int64_t count, ReduceOp op) {
  if (empty(count, "all_reduce")) return;
  if (on_host(data, "all_reduce")) return twin_->all_reduce(data, count, op);
  device_all_reduce(data, count, ncclDouble, op);
}

void NcclCommunicator::all_reduce(int64_t* data, int64_t count, ReduceOp op) {
  if (empty(count, "all_reduce")) return;
  if (on_host(data, "all_reduce")) return twin_->all_reduce(data, count, op);
  device_all_reduce(data, count, ncclInt64, op);
}

void NcclCommunicator::broadcast(void* data, int64_t bytes, int root) {
  if (root < 0 || root >= size_)
    throw std::invalid_argument("NcclCommunicator::broadcast: root " + std::to_string(root) +
                                " is not a rank of this communicator (size " +
                                std::to_string(size_) + ")");
  if (empty(bytes, "broadcast")) return;
  if (on_host(data, "broadcast")) return twin_->broadcast(data, bytes, root);
  run([&] {
    VMOE_NCCL_CHECK(ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, comm_,
                                  stream_));
  });
}

void NcclCommunicator::all_gather(const void* send, void* recv, int64_t bytes) {
  if (empty(bytes, "all_gather")) return;
  if (on_host(send, recv, "all_gather")) return twin_->all_gather(send, recv, bytes);
  run([&] {
    VMOE_NCCL_CHECK(
        ncclAllGather(send, recv, static_cast<size_t>(bytes), ncclUint8, comm_, stream_));
  });
}

void NcclCommunicator::barrier() {
  {
    VMOE_COMM_DEVICE_SCOPE(device_);
    CollectiveScope scope("NCCL barrier (a wait for the collectives in flight)");
    VMOE_COMM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  twin_->barrier();
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  return std::unique_ptr<Communicator>(
      new NcclCommunicator(twin_->split_mpi(color, key), compute_, device_));
}

void NcclCommunicator::abort(int exit_code) {
  if (comm_ != nullptr) {
    DeviceGuard guard(device_);
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  twin_->abort(exit_code);
}

}  // namespace vmoe
