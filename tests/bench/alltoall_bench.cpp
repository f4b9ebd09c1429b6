// All-to-all benchmark in the style of NVIDIA/nccl-tests: for each size (the
// bytes each rank sends, split into equal chunks), our Communicator and raw
// MPI_Alltoall run alternately; the table shows time, algorithm bandwidth
// (size / time) and bus bandwidth (algbw * (n-1) / n), with every received
// element checked and the wrong ones summed over ranks.
//   mpirun -np 2 build/tests/alltoall_bench [--min_bytes=65536 --max_bytes=67108864]
#include <gflags/gflags.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "comm/mpi_communicator.h"

DEFINE_int64(min_bytes, 64 << 10, "smallest size (bytes sent per rank)");
DEFINE_int64(max_bytes, 64 << 20, "largest size");
DEFINE_int32(rounds, 5, "alternating rounds per size; the median round is reported");
DEFINE_double(seconds, 0.05, "time per round and implementation");

namespace {

using vmoe::Communicator;

float pattern(int from, int to, int64_t i) { return static_cast<float>(from * 1000003 + to * 7919 + i % 4099); }

// Seconds per call (the slowest rank's), over enough calls to fill `seconds`.
template <typename F>
double time_calls(Communicator& world, F&& call) {
  call();  // warm-up
  world.barrier();
  int calls = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    call();
    ++calls;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Every rank must make the same number of calls: rank 0 decides.
    int more = elapsed < FLAGS_seconds;
    world.broadcast(&more, sizeof more, 0);
    if (!more) break;
  } while (true);
  return vmoe::all_reduce_value(world, elapsed / calls, vmoe::ReduceOp::kMax);
}

}  // namespace

int main(int argc, char** argv) {
  vmoe::MpiRuntime mpi(&argc, &argv);
  vmoe::MpiCommunicator world;
  gflags::SetUsageMessage("All-to-all bandwidth of our Communicator against raw MPI_Alltoall.");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const int n = world.size(), r = world.rank();
  if (r == 0) {
    std::printf("# all-to-all, %d ranks; busbw = algbw * (n-1)/n; times in us, bandwidths in GB/s\n", n);
    std::printf("#%11s %11s | %9s %8s %8s | %9s %8s %8s | %6s %7s\n", "size(B)", "count(f32)",
                "ours:time", "algbw", "busbw", "mpi:time", "algbw", "busbw", "ratio", "#wrong");
  }
  int64_t all_ok = 1;
  for (int64_t bytes = FLAGS_min_bytes; bytes <= FLAGS_max_bytes; bytes *= 2) {
    const int64_t count = bytes / 4 / n * n;  // floats, divisible into n chunks
    const int64_t chunk = count / n;
    std::vector<float> send(static_cast<size_t>(count)), recv(send.size());
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < chunk; ++i) send[p * chunk + i] = pattern(r, p, i);
    // Correctness of ours, every element.
    std::fill(recv.begin(), recv.end(), -1.0f);
    world.all_to_all(send.data(), recv.data(), chunk);
    int64_t wrong = 0;
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < chunk; ++i) wrong += recv[p * chunk + i] != pattern(p, r, i);
    wrong = vmoe::all_reduce_value(world, wrong);
    std::vector<double> ours, raw;
    auto time_ours = [&] {
      ours.push_back(time_calls(world, [&] { world.all_to_all(send.data(), recv.data(), chunk); }));
    };
    auto time_raw = [&] {
      raw.push_back(time_calls(world, [&] {
        MPI_Alltoall(send.data(), static_cast<int>(chunk), MPI_FLOAT, recv.data(),
                     static_cast<int>(chunk), MPI_FLOAT, world.handle());
      }));
    };
    for (int round = 0; round < FLAGS_rounds; ++round) {
      // Alternate who goes first: the second runs on warmer caches and pages.
      if (round % 2 == 0) {
        time_ours();
        time_raw();
      } else {
        time_raw();
        time_ours();
      }
    }
    std::sort(ours.begin(), ours.end());
    std::sort(raw.begin(), raw.end());
    const double t_ours = ours[ours.size() / 2], t_raw = raw[raw.size() / 2];
    const double size = static_cast<double>(count) * 4, factor = (n - 1.0) / n;
    const double bw_ours = size / t_ours / 1e9, bw_raw = size / t_raw / 1e9;
    if (wrong != 0) all_ok = 0;
    if (r == 0) {
      std::printf(" %11lld %11lld | %9.1f %8.2f %8.2f | %9.1f %8.2f %8.2f | %6.3f %7lld\n",
                  static_cast<long long>(size), static_cast<long long>(count), t_ours * 1e6,
                  bw_ours, bw_ours * factor, t_raw * 1e6, bw_raw, bw_raw * factor,
                  bw_ours / bw_raw, static_cast<long long>(wrong));
    }
  }
  if (r == 0) std::printf("# %s\n", all_ok ? "all data correct" : "WRONG DATA");
  return all_ok ? 0 : 1;
}
