#include "comm/peer_buffers.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "comm/mpi_check.h"
#include "comm/watchdog.h"

namespace vmoe {

std::unique_ptr<PeerBuffers> PeerBuffers::create(const MpiCommunicator& comm) {
  if (comm.size() < 2) return nullptr;
  // Shared windows need every rank on this node: on every rank, or on none.
  const std::unique_ptr<MpiCommunicator> node = comm.split_by_node();
  int local = node->size() == comm.size() ? 1 : 0;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &local, 1, MPI_INT, MPI_MIN, comm.handle()),
            "MPI_Allreduce");
  if (local == 0) return nullptr;
  return std::unique_ptr<PeerBuffers>(new PeerBuffers(comm.duplicate()));
}

PeerBuffers::PeerBuffers(std::unique_ptr<MpiCommunicator> comm)
    : comm_(std::move(comm)),
      rank_(comm_->rank()),
      size_(comm_->size()),
      directory_(shared_window_directory()) {}

PeerBuffers::~PeerBuffers() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  // Freeing a window is collective: a rank unwinding from an error must not
  // wait for peers that will never come (the job is being stopped).
  if (finalized || std::uncaught_exceptions() > 0) return;
  for (auto& [key, w] : windows_) release(w);
}

int64_t PeerBuffers::page_bytes() {
  const long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? page : 4096;
}

bool PeerBuffers::allocate(Window& w, int64_t bytes) {
  const CollectiveScope watched("MPI win_allocate_shared");
  release(w);
  MPI_Info info = MPI_INFO_NULL;
  // Each rank's segment on its own pages (first touched by its owner).
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  void* base = nullptr;
  const int code = MPI_Win_allocate_shared(static_cast<MPI_Aint>(bytes), 1, info, comm_->handle(),
                                           &base, &w.win);
  MPI_Info_free(&info);
  if (code != MPI_SUCCESS) {
    w.win = MPI_WIN_NULL;
    check_mpi(code, ("MPI_Win_allocate_shared of " + std::to_string(bytes) +
                     " bytes (the expert exchange's buffers; --expert_exchange=all_to_all "
                     "sends them instead)")
                        .c_str());
  }
  MPI_Win_set_errhandler(w.win, MPI_ERRORS_RETURN);
  // Open MPI puts page-sized segments back to back; an MPI that does not
  // (or maps them differently on another rank) gets no spans.
  std::vector<char*> bases(static_cast<size_t>(size_));
  int back_to_back = 1;
  for (int q = 0; q < size_; ++q) {
    MPI_Aint got = 0;
    int unit = 0;
    void* at = nullptr;
    check_mpi(MPI_Win_shared_query(w.win, q, &got, &unit, &at), "MPI_Win_shared_query");
    if (got < bytes)
      throw std::runtime_error("MPI_Win_shared_query: rank " + std::to_string(q) + " mapped " +
                               std::to_string(got) + " bytes, not " + std::to_string(bytes));
    bases[static_cast<size_t>(q)] = static_cast<char*>(at);
    back_to_back &= static_cast<char*>(at) == bases[0] + q * bytes ? 1 : 0;
  }
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &back_to_back, 1, MPI_INT, MPI_MIN, comm_->handle()),
            "MPI_Allreduce");
  if (back_to_back == 0) {
    MPI_Win_free(&w.win);
    w.win = MPI_WIN_NULL;
    if (rank_ == 0)
      std::fprintf(stderr,
                   "vmoe: warning: this MPI maps the ranks' shared-memory segments apart: the "
                   "experts' rows are sent with MPI all-to-alls instead (slower).\n");
    return false;
  }
  // One passive-target epoch for the window's life: loads and stores are
  // ordered by publish()'s MPI_Win_sync and barrier.
  check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, w.win), "MPI_Win_lock_all");
  w.bytes = bytes;
  w.base = bases[0];
  return true;
}

void PeerBuffers::release(Window& w) {
  if (w.win == MPI_WIN_NULL) return;
  MPI_Win_unlock_all(w.win);
  MPI_Win_free(&w.win);
  w.win = MPI_WIN_NULL;
  w.bytes = 0;
  w.base = nullptr;
}

PeerBuffers::Span PeerBuffers::span(int key, int64_t bytes) {
  if (bytes <= 0 || bytes % page_bytes() != 0)
    throw std::invalid_argument("PeerBuffers::span: " + std::to_string(bytes) +
                                " bytes, not a positive multiple of the page size");
  if (given_up_) return {};
  // The same keys and sizes on every rank, so all of them grow a window here
  // together (or all give up together).
  Window& w = windows_[key];
  if (w.bytes < bytes && (!room_for(bytes - w.bytes) || !allocate(w, bytes))) {
    given_up_ = true;  // the windows handed out before stay: callers may hold data in them
    return {};
  }
  return {w.base, w.bytes};
}

int64_t PeerBuffers::bytes(int key) const {
  const auto it = windows_.find(key);
  return it == windows_.end() ? 0 : it->second.bytes;
}

bool PeerBuffers::room_for(int64_t bytes) {
  // Every rank's segment lives in the same directory of this node.
  const std::string& dir = directory_;
  const int64_t free = dir.empty() ? -1 : free_bytes_in(dir);
  const double need = static_cast<double>(bytes) * size_;
  int fits = free < 0 || need <= static_cast<double>(free) ? 1 : 0;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &fits, 1, MPI_INT, MPI_MIN, comm_->handle()),
            "MPI_Allreduce");
  if (fits == 0 && rank_ == 0) {
    std::fprintf(stderr,
                 "vmoe: warning: the expert exchange's shared buffers need %.0f MiB more in %s, "
                 "which has %.0f MiB free: the experts' rows are sent with MPI all-to-alls "
                 "instead (slower). A larger %s (docker run --shm-size=...), or mpirun --mca "
                 "osc_sm_backing_directory DIR on a local file system with room, gives the "
                 "in-place exchange back.\n",
                 need / (1 << 20), dir.c_str(), static_cast<double>(free) / (1 << 20), dir.c_str());
  }
  return fits == 1;
}

std::string shared_window_directory() {
  int provided = 0;
  if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return "";
  std::string dir;
  int index = 0, count = 0;
  MPI_T_cvar_handle handle = MPI_T_CVAR_HANDLE_NULL;
  if (MPI_T_cvar_get_index("osc_sm_backing_directory", &index) == MPI_SUCCESS &&
      MPI_T_cvar_handle_alloc(index, nullptr, &handle, &count) == MPI_SUCCESS) {
    std::vector<char> value(static_cast<size_t>(count) + 1, '\0');
    if (MPI_T_cvar_read(handle, value.data()) == MPI_SUCCESS) dir = value.data();
    MPI_T_cvar_handle_free(&handle);
  }
  MPI_T_finalize();
  return dir;
}

int64_t free_bytes_in(const std::string& dir) {
  struct statvfs fs {};
  if (statvfs(dir.c_str(), &fs) != 0) return -1;
  return static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
}

void PeerBuffers::publish() {
  const CollectiveScope watched("MPI shared_memory_exchange");  // its barrier
  // This rank's stores before the barrier, the peers' visible after it.
  for (auto& [key, w] : windows_)
    if (w.win != MPI_WIN_NULL) check_mpi(MPI_Win_sync(w.win), "MPI_Win_sync");
  check_mpi(MPI_Barrier(comm_->handle()), "MPI_Barrier");
  for (auto& [key, w] : windows_)
    if (w.win != MPI_WIN_NULL) check_mpi(MPI_Win_sync(w.win), "MPI_Win_sync");
}

}  // namespace vmoe
