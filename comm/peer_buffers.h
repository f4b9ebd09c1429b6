// Host buffers that every rank of an MPI communicator maps, for exchanges
// between ranks of one node that read each other's memory in place instead
// of sending it (MPI-3 shared windows: MPI_Win_allocate_shared).
//
// An exchange is: outbox(bytes), which the rank fills; publish(), a barrier
// after which every rank's outbox may be read; then peer(q) reads. Exchanges
// alternate between two windows, so a rank may fill the next outbox while a
// slower peer still reads the last one: a window is written again only after
// the barrier of the exchange in between, which every rank enters after it
// finished reading. Every rank makes the same calls with the same sizes.
//
// Open MPI maps the windows from files in a directory (osc_sm_backing_directory:
// /dev/shm on Linux, which containers often size at 64 MiB). Where a file does
// not fit, Open MPI 4.1 fails the allocation on the rank that creates it and
// its peers wait in it for good. So a window grows only where its directory
// has room on every rank; where it has not, the buffers are given up for good
// (outbox() returns null: the caller sends instead), with one warning.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "comm/mpi_communicator.h"

namespace vmoe {

class PeerBuffers {
 public:
  // Collective over `comm`. Null unless every rank of it shares this rank's
  // node (MPI_COMM_TYPE_SHARED), or when comm has one rank.
  static std::unique_ptr<PeerBuffers> create(const MpiCommunicator& comm);
  ~PeerBuffers();
  PeerBuffers(const PeerBuffers&) = delete;
  PeerBuffers& operator=(const PeerBuffers&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Collective: this rank's outbox for the next exchange, at least `bytes`
  // (the same on every rank; a window grows, collectively, when too small).
  // Null, on every rank, once a window has not fitted.
  void* outbox(int64_t bytes);
  bool given_up() const { return given_up_; }
  // The outbox handed out last (null before the first), and whether it is
  // still being filled (not yet published).
  void* current() const {
    const Window& w = windows_[current_];
    return w.bases != nullptr ? w.bases[rank_] : nullptr;
  }
  bool filling() const { return filling_; }
  // Collective: every rank has filled its outbox; then peers' may be read.
  void publish();
  // Rank q's outbox of the current exchange (after publish()).
  const void* peer(int q) const;

 private:
  explicit PeerBuffers(std::unique_ptr<MpiCommunicator> comm);
  struct Window {
    MPI_Win win = MPI_WIN_NULL;
    int64_t bytes = 0;
    std::unique_ptr<void*[]> bases;  // each rank's segment, mapped here
  };
  void allocate(Window& w, int64_t bytes);
  void release(Window& w);
  // Collective: whether `bytes` more per rank fit where the windows live, on
  // every rank; warns (once, from rank 0) where they do not.
  bool room_for(int64_t bytes);

  std::unique_ptr<MpiCommunicator> comm_;  // a duplicate: its barriers match no other traffic
  int rank_, size_;
  Window windows_[2];
  int current_ = 1;       // the window of the last outbox()
  bool filling_ = false;  // outbox() handed out, publish() not yet called
  bool given_up_ = false;  // a window did not fit: no more outboxes
};

// The directory Open MPI maps shared windows from (its MCA variable
// osc_sm_backing_directory, read through MPI_T), or "" where it cannot tell.
std::string shared_window_directory();
// Bytes free for an unprivileged writer in `dir`'s file system (-1: unknown).
int64_t free_bytes_in(const std::string& dir);

}  // namespace vmoe
