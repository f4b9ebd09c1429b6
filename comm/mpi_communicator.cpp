#include "comm/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "comm/mpi_check.h"
#include "comm/watchdog.h"

namespace vmoe {
namespace {

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::kSum ? MPI_SUM : MPI_MAX; }

// Counts above INT_MAX bytes travel as 1 KiB blocks (MPI counts are int).
constexpr int64_t kBlock = 1024;

}  // namespace

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  if (initialized()) return;
  // Open MPI's default MPI-IO component (OMPIO) makes the collective HDF5
  // checkpoint writes crawl when ranks share cores (19 s against 0.5 s for the
  // checkpoint tests on 4 ranks / 2 cores); ROMIO, the usual choice for HDF5,
  // does not. A user's own OMPI_MCA_io wins.
  setenv("OMPI_MCA_io", "romio321", /*overwrite=*/0);
  int provided = 0;
  check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  // Errors come back as codes so they become vmoe::Error messages.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

bool MpiRuntime::initialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
  if (!MpiRuntime::initialized()) throw std::logic_error("MpiCommunicator before MpiRuntime");
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && !finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::all_to_all(const float* send, float* recv, int64_t count) {
  all_to_all(send, recv, count, MPI_FLOAT, sizeof(float));
}

void MpiCommunicator::all_to_all(const int32_t* send, int32_t* recv, int64_t count) {
  all_to_all(send, recv, count, MPI_INT32_T, sizeof(int32_t));
}

void MpiCommunicator::all_to_all(const void* send, void* recv, int64_t count, MPI_Datatype type,
                                 int64_t size) {
  const CollectiveScope watched("MPI all_to_all");
  if (count > INT_MAX) return all_to_all_bytes(send, recv, count * size);  // in 1 KiB blocks
  check_mpi(MPI_Alltoall(send, static_cast<int>(count), type, recv, static_cast<int>(count), type,
                     comm_),
        "MPI_Alltoall");
}

void MpiCommunicator::all_to_all_bytes(const void* send, void* recv, int64_t bytes) {
  const CollectiveScope watched("MPI all_to_all");
  if (bytes <= INT_MAX) {
    check_mpi(MPI_Alltoall(send, static_cast<int>(bytes), MPI_BYTE, recv, static_cast<int>(bytes),
                       MPI_BYTE, comm_),
          "MPI_Alltoall");
    return;
  }
  if (bytes % kBlock != 0)
    throw std::runtime_error("all-to-all chunks above 2 GiB must be a multiple of 1 KiB");
  MPI_Datatype block;
  MPI_Type_contiguous(static_cast<int>(kBlock), MPI_BYTE, &block);
  MPI_Type_commit(&block);
  const int n = static_cast<int>(bytes / kBlock);
  const int code = MPI_Alltoall(send, n, block, recv, n, block, comm_);
  MPI_Type_free(&block);
  check_mpi(code, "MPI_Alltoall");
}

void MpiCommunicator::all_reduce(void* data, int64_t count, MPI_Datatype type, ReduceOp op) {
  const CollectiveScope watched("MPI all_reduce");
  // In chunks below INT_MAX elements.
  int size = 0;
  MPI_Type_size(type, &size);
  char* p = static_cast<char*>(data);
  for (int64_t done = 0; done < count;) {
    const int n = static_cast<int>(std::min<int64_t>(count - done, INT_MAX / 2));
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, p + done * size, n, type, mpi_op(op), comm_),
          "MPI_Allreduce");
    done += n;
  }
}

void MpiCommunicator::all_reduce(float* data, int64_t count, ReduceOp op) {
  all_reduce(data, count, MPI_FLOAT, op);
}
void MpiCommunicator::all_reduce(double* data, int64_t count, ReduceOp op) {
  all_reduce(data, count, MPI_DOUBLE, op);
}
void MpiCommunicator::all_reduce(int64_t* data, int64_t count, ReduceOp op) {
  all_reduce(data, count, MPI_INT64_T, op);
}

void MpiCommunicator::broadcast(void* data, int64_t bytes, int root) {
  const CollectiveScope watched("MPI broadcast");
  char* p = static_cast<char*>(data);
  for (int64_t done = 0; done < bytes;) {
    const int n = static_cast<int>(std::min<int64_t>(bytes - done, INT_MAX));
    check_mpi(MPI_Bcast(p + done, n, MPI_BYTE, root, comm_), "MPI_Bcast");
    done += n;
  }
}

void MpiCommunicator::all_gather(const void* send, void* recv, int64_t bytes) {
  const CollectiveScope watched("MPI all_gather");
  if (bytes > INT_MAX) throw std::runtime_error("all-gather chunks are limited to 2 GiB");
  check_mpi(MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, recv, static_cast<int>(bytes),
                      MPI_BYTE, comm_),
        "MPI_Allgather");
}

void MpiCommunicator::barrier() {
  const CollectiveScope watched("MPI barrier");
  check_mpi(MPI_Barrier(comm_), "MPI_Barrier");
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::duplicate() const {
  MPI_Comm copy;
  check_mpi(MPI_Comm_dup(comm_, &copy), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(copy, MPI_ERRORS_RETURN);
  return std::make_unique<MpiCommunicator>(copy, /*owned=*/true);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split_mpi(int color, int key) const {
  MPI_Comm sub;
  check_mpi(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
  if (sub == MPI_COMM_NULL)
    throw std::invalid_argument("split: color " + std::to_string(color) +
                                " puts this rank in no group");
  MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
  return std::make_unique<MpiCommunicator>(sub, /*owned=*/true);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split_by_node() const {
  MPI_Comm node;
  check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
  MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
  return std::make_unique<MpiCommunicator>(node, /*owned=*/true);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  return split_mpi(color, key);
}

void MpiCommunicator::abort(int exit_code) {
  MPI_Abort(comm_, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this satisfies [[noreturn]]
}

}  // namespace vmoe
