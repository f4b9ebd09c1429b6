#include "comm/peer_buffers.h"

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

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
    : comm_(std::move(comm)), rank_(comm_->rank()), size_(comm_->size()) {}

PeerBuffers::~PeerBuffers() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  // Freeing a window is collective: a rank unwinding from an error must not
  // wait for peers that will never come (the job is being stopped).
  if (finalized || std::uncaught_exceptions() > 0) return;
  for (Window& w : windows_) release(w);
}

void PeerBuffers::allocate(Window& w, int64_t bytes) {
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
  w.bases = std::make_unique<void*[]>(size_);
  for (int q = 0; q < size_; ++q) {
    MPI_Aint got = 0;
    int unit = 0;
    check_mpi(MPI_Win_shared_query(w.win, q, &got, &unit, &w.bases[q]), "MPI_Win_shared_query");
    if (got < bytes)
      throw std::runtime_error("MPI_Win_shared_query: rank " + std::to_string(q) + " mapped " +
                               std::to_string(got) + " bytes, not " + std::to_string(bytes));
  }
  // One passive-target epoch for the window's life: loads and stores are
  // ordered by publish()'s MPI_Win_sync and barrier.
  check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, w.win), "MPI_Win_lock_all");
  w.bytes = bytes;
}

void PeerBuffers::release(Window& w) {
  if (w.win == MPI_WIN_NULL) return;
  MPI_Win_unlock_all(w.win);
  MPI_Win_free(&w.win);
  w.win = MPI_WIN_NULL;
  w.bytes = 0;
  w.bases.reset();
}

void* PeerBuffers::outbox(int64_t bytes) {
  if (filling_) throw std::logic_error("PeerBuffers::outbox: the last outbox was never published");
  current_ ^= 1;
  Window& w = windows_[current_];
  // The same sizes on every rank, so all of them regrow here together.
  if (w.bytes < bytes) allocate(w, bytes);
  filling_ = true;
  return w.bases[rank_];
}

void PeerBuffers::publish() {
  if (!filling_) throw std::logic_error("PeerBuffers::publish without an outbox");
  const CollectiveScope watched("MPI shared_memory_exchange");  // its barrier
  const MPI_Win win = windows_[current_].win;
  check_mpi(MPI_Win_sync(win), "MPI_Win_sync");  // this rank's stores, before the barrier
  check_mpi(MPI_Barrier(comm_->handle()), "MPI_Barrier");
  check_mpi(MPI_Win_sync(win), "MPI_Win_sync");  // the peers' stores, visible after it
  filling_ = false;
}

const void* PeerBuffers::peer(int q) const {
  // Published: the last outbox() was followed by publish().
  if (filling_ || current() == nullptr || q < 0 || q >= size_)
    throw std::logic_error("PeerBuffers::peer(" + std::to_string(q) + ") before publish()");
  return windows_[current_].bases[q];
}

}  // namespace vmoe
