// Host buffers that every rank of an MPI communicator maps, for exchanges
// between ranks of one node that write and read each other's memory in place
// instead of sending it (MPI-3 shared windows: MPI_Win_allocate_shared).
//
// Each buffer has a key and one segment per rank, mapped back to back (a
// Span): an op can scatter rows straight into the segments of the ranks that
// need them, or gather rows from them, with one row index over all ranks.
// publish() is the barrier between writers and readers. A buffer keeps its
// contents until it is asked for with more bytes (it then grows,
// collectively), so the caller decides, through the barriers between its
// uses, when a buffer may be written again. Every rank makes the same calls
// with the same sizes.
//
// Open MPI maps the windows from files in a directory (osc_sm_backing_directory:
// /dev/shm on Linux, which containers often size at 64 MiB). Where a file does
// not fit, Open MPI 4.1 fails the allocation on the rank that creates it and
// its peers wait in it for good. So a window grows only where its directory
// has room on every rank; where it has not, or where an MPI maps the segments
// apart, the buffers are given up for good (span() returns an empty span: the
// caller sends instead), with one warning. Windows handed out before stay
// mapped: a caller may still hold data in them.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <map>
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
  // Every rank's segment of one buffer: rank q's `stride` bytes start at
  // base + q * stride. Empty (base null) once the buffers are given up.
  struct Span {
    char* base = nullptr;
    int64_t stride = 0;
    char* segment(int q) const { return base + q * stride; }
  };
  // Segment sizes are multiples of this (the page size): segments of that
  // size lie back to back.
  static int64_t page_bytes();
  // Collective: buffer `key`, with at least `bytes` per rank (a multiple of
  // page_bytes(), the same on every rank): its stride is the most ever asked
  // of that key. A smaller one grows (its contents are lost). Empty, on every
  // rank, once given up.
  Span span(int key, int64_t bytes);
  // Buffer `key`'s bytes per rank so far (0: none).
  int64_t bytes(int key) const;
  bool given_up() const { return given_up_; }
  // Collective: a barrier after which every rank's writes to any buffer so
  // far are visible to every rank.
  void publish();

 private:
  explicit PeerBuffers(std::unique_ptr<MpiCommunicator> comm);
  struct Window {
    MPI_Win win = MPI_WIN_NULL;
    int64_t bytes = 0;
    char* base = nullptr;  // rank 0's segment, mapped here: the span's base
  };
  // Collective. False (nothing allocated) where the segments are not back to back.
  bool allocate(Window& w, int64_t bytes);
  void release(Window& w);
  // Collective: whether `bytes` more per rank fit where the windows live, on
  // every rank; warns (once, from rank 0) where they do not.
  bool room_for(int64_t bytes);

  std::unique_ptr<MpiCommunicator> comm_;  // a duplicate: its barriers match no other traffic
  int rank_, size_;
  std::map<int, Window> windows_;
  std::string directory_;  // where Open MPI maps them ("" where it cannot tell)
  bool given_up_ = false;  // a window did not fit: no more spans
};

// The directory Open MPI maps shared windows from (its MCA variable
// osc_sm_backing_directory, read through MPI_T), or "" where it cannot tell.
std::string shared_window_directory();
// Bytes free for an unprivileged writer in `dir`'s file system (-1: unknown).
int64_t free_bytes_in(const std::string& dir);

}  // namespace vmoe
