// All-to-all benchmark in the style of NVIDIA/nccl-tests: for each size (the
// bytes each rank sends, split into equal chunks), our Communicator and the
// raw library call run alternately; the table shows time, algorithm bandwidth
// (size / time) and bus bandwidth (algbw * (n-1) / n), with every received
// element checked and the wrong ones summed over ranks.
//   --device=cpu (default): host buffers, MpiCommunicator against raw
//     MPI_Alltoall.
//   --device=shared: host buffers on one node, the expert exchange's
//     shared-memory path (comm/peer_buffers.h: each rank writes its chunk
//     for every peer straight into that peer's segment, as the MoE layer's
//     scatters do, then a barrier) against raw MPI_Alltoall. What a rank
//     received is read where it lies, in its own segment.
//   --device=cuda (builds with NCCL): device buffers, NcclCommunicator against
//     raw grouped ncclSend/ncclRecv on the same stream; every call is timed up
//     to the stream's completion. One GPU per rank (by local rank).
//   mpirun -np 2 build/tests/alltoall_bench [--min_bytes=65536 --max_bytes=67108864]
#include <gflags/gflags.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/peer_buffers.h"

#ifdef VMOE_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "comm/device.h"
#include "comm/nccl_check.h"
#include "comm/nccl_communicator.h"
#endif

DEFINE_int64(min_bytes, 64 << 10, "smallest size (bytes sent per rank)");
DEFINE_int64(max_bytes, 64 << 20, "largest size");
DEFINE_int32(rounds, 5, "alternating rounds per size; the median round is reported");
DEFINE_double(seconds, 0.05, "time per round and implementation");
DEFINE_string(device, "cpu",
              "where the buffers live: cpu (MpiCommunicator against MPI_Alltoall), shared (the "
              "exchange in shared memory against MPI_Alltoall; ranks on one node) or cuda "
              "(NcclCommunicator against grouped ncclSend/ncclRecv; needs a CUDA build)");

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

// Host buffers, against MPI_Alltoall of the same chunks; ours() is the
// implementation under test.
class HostAllToAll {
 public:
  explicit HostAllToAll(vmoe::MpiCommunicator& world) : world_(world) {}
  virtual ~HostAllToAll() = default;
  static const char* raw_name() { return "mpi"; }

  // Buffers for `chunk` floats per rank, send filled with the pattern.
  virtual void prepare(int64_t chunk) {
    const int n = world_.size(), r = world_.rank();
    chunk_ = chunk;
    send_.assign(static_cast<size_t>(n * chunk), 0.0f);
    recv_.assign(send_.size(), 0.0f);
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < chunk; ++i) send_[p * chunk + i] = pattern(r, p, i);
  }
  // Correctness of ours, every element: the number of wrong ones here.
  int64_t wrong() {
    const int n = world_.size(), r = world_.rank();
    float* got = received();
    std::fill(got, got + n * chunk_, -1.0f);
    world_.barrier();  // no peer writes to `got` before it is filled
    ours();
    int64_t wrong = 0;
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < chunk_; ++i) wrong += got[p * chunk_ + i] != pattern(p, r, i);
    return wrong;
  }
  virtual void ours() = 0;
  // Where ours() leaves what this rank received: n chunks.
  virtual float* received() { return recv_.data(); }
  void raw() {
    MPI_Alltoall(send_.data(), static_cast<int>(chunk_), MPI_FLOAT, recv_.data(),
                 static_cast<int>(chunk_), MPI_FLOAT, world_.handle());
  }

 protected:
  vmoe::MpiCommunicator& world_;
  int64_t chunk_ = 0;
  std::vector<float> send_, recv_;
};

// MpiCommunicator: the same call, through our interface.
class CpuAllToAll final : public HostAllToAll {
 public:
  using HostAllToAll::HostAllToAll;
  void ours() override { world_.all_to_all(send_.data(), recv_.data(), chunk_); }
};

// Ranks of one node writing into each other's segments in place (PeerBuffers).
class SharedAllToAll final : public HostAllToAll {
 public:
  explicit SharedAllToAll(vmoe::MpiCommunicator& world)
      : HostAllToAll(world), peers_(vmoe::PeerBuffers::create(world)) {
    if (peers_ == nullptr)
      throw std::runtime_error("--device=shared needs 2 or more ranks, all on one node");
  }
  void prepare(int64_t chunk) override {
    HostAllToAll::prepare(chunk);
    const int64_t page = vmoe::PeerBuffers::page_bytes();
    const int64_t bytes = static_cast<int64_t>(send_.size() * sizeof(float));
    span_ = peers_->span(0, (bytes + page - 1) / page * page);
    if (span_.base == nullptr) throw std::runtime_error("the shared buffers did not fit");
  }
  void ours() override {
    const int n = world_.size(), r = world_.rank();
    for (int p = 0; p < n; ++p)
      std::memcpy(segment(p) + r * chunk_, send_.data() + p * chunk_,
                  static_cast<size_t>(chunk_) * sizeof(float));
    peers_->publish();
  }
  float* received() override { return segment(world_.rank()); }

 private:
  float* segment(int q) const { return reinterpret_cast<float*>(span_.segment(q)); }
  std::unique_ptr<vmoe::PeerBuffers> peers_;
  vmoe::PeerBuffers::Span span_;
};

#ifdef VMOE_HAVE_NCCL
// Device buffers: NcclCommunicator (its own stream, event-ordered against
// ours) against grouped ncclSend/ncclRecv on a separate raw NCCL communicator,
// queued straight on our stream. Each call waits for the stream.
class CudaAllToAll {
 public:
  CudaAllToAll(vmoe::MpiCommunicator& world, int device) : world_(world), device_(device) {
    VMOE_COMM_CUDA_CHECK(cudaSetDevice(device_));
    VMOE_COMM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    nccl_ = std::make_unique<vmoe::NcclCommunicator>(world_, stream_);
    ncclUniqueId id{};
    if (world_.rank() == 0) VMOE_NCCL_CHECK(ncclGetUniqueId(&id));
    world_.broadcast(&id, sizeof id, 0);
    VMOE_NCCL_CHECK(ncclCommInitRank(&raw_comm_, world_.size(), id, world_.rank()));
  }
  ~CudaAllToAll() {
    cudaStreamSynchronize(stream_);
    cudaFree(send_);
    cudaFree(recv_);
    if (raw_comm_ != nullptr) {
      ncclCommFinalize(raw_comm_);
      ncclCommDestroy(raw_comm_);
    }
    nccl_.reset();
    cudaStreamDestroy(stream_);
  }
  CudaAllToAll(const CudaAllToAll&) = delete;
  CudaAllToAll& operator=(const CudaAllToAll&) = delete;
  static const char* raw_name() { return "nccl"; }

  void prepare(int64_t chunk) {
    const int n = world_.size(), r = world_.rank();
    chunk_ = chunk;
    host_.assign(static_cast<size_t>(n * chunk), 0.0f);
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < chunk; ++i) host_[p * chunk + i] = pattern(r, p, i);
    VMOE_COMM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    VMOE_COMM_CUDA_CHECK(cudaFree(send_));
    VMOE_COMM_CUDA_CHECK(cudaFree(recv_));
    send_ = recv_ = nullptr;
    const size_t bytes = host_.size() * sizeof(float);
    VMOE_COMM_CUDA_CHECK(cudaMalloc(&send_, std::max<size_t>(bytes, 1)));
    VMOE_COMM_CUDA_CHECK(cudaMalloc(&recv_, std::max<size_t>(bytes, 1)));
    VMOE_COMM_CUDA_CHECK(
        cudaMemcpyAsync(send_, host_.data(), bytes, cudaMemcpyHostToDevice, stream_));
    VMOE_COMM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  int64_t wrong() {
    const int n = world_.size(), r = world_.rank();
    const size_t bytes = host_.size() * sizeof(float);
    // Queued on our stream with no host sync in between: this also checks
    // the stream ordering of NcclCommunicator (all-ones bytes are NaNs).
    VMOE_COMM_CUDA_CHECK(cudaMemsetAsync(recv_, 0xff, bytes, stream_));
    nccl_->all_to_all(send_, recv_, chunk_);
    VMOE_COMM_CUDA_CHECK(
        cudaMemcpyAsync(host_.data(), recv_, bytes, cudaMemcpyDeviceToHost, stream_));
    VMOE_COMM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    int64_t wrong = 0;
    for (int p = 0; p < n; ++p)
      for (int64_t i = 0; i < chunk_; ++i) wrong += host_[p * chunk_ + i] != pattern(p, r, i);
    return wrong;
  }
  void ours() {
    nccl_->all_to_all(send_, recv_, chunk_);
    VMOE_COMM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void raw() {
    const size_t count = static_cast<size_t>(chunk_);
    VMOE_NCCL_CHECK(ncclGroupStart());
    for (int p = 0; p < world_.size(); ++p) {
      VMOE_NCCL_CHECK(ncclSend(send_ + p * chunk_, count, ncclFloat, p, raw_comm_, stream_));
      VMOE_NCCL_CHECK(ncclRecv(recv_ + p * chunk_, count, ncclFloat, p, raw_comm_, stream_));
    }
    VMOE_NCCL_CHECK(ncclGroupEnd());
    VMOE_COMM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

 private:
  vmoe::MpiCommunicator& world_;
  int device_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<vmoe::NcclCommunicator> nccl_;
  ncclComm_t raw_comm_ = nullptr;
  int64_t chunk_ = 0;
  float* send_ = nullptr;
  float* recv_ = nullptr;
  std::vector<float> host_;
};
#endif

// The table over all sizes; true when every element arrived right.
template <typename Impl>
bool run(vmoe::MpiCommunicator& world, Impl& impl, const char* where) {
  const int n = world.size(), r = world.rank();
  if (r == 0) {
    std::printf("# all-to-all%s, %d ranks; busbw = algbw * (n-1)/n; times in us, bandwidths in GB/s\n",
                where, n);
    const std::string raw_time = std::string(Impl::raw_name()) + ":time";
    std::printf("#%11s %11s | %9s %8s %8s | %9s %8s %8s | %6s %7s\n", "size(B)", "count(f32)",
                "ours:time", "algbw", "busbw", raw_time.c_str(), "algbw", "busbw", "ratio",
                "#wrong");
  }
  int64_t all_ok = 1;
  for (int64_t bytes = FLAGS_min_bytes; bytes <= FLAGS_max_bytes; bytes *= 2) {
    const int64_t count = bytes / 4 / n * n;  // floats, divisible into n chunks
    const int64_t chunk = count / n;
    impl.prepare(chunk);
    const int64_t wrong = vmoe::all_reduce_value(world, impl.wrong());
    std::vector<double> ours, raw;
    auto time_ours = [&] { ours.push_back(time_calls(world, [&] { impl.ours(); })); };
    auto time_raw = [&] { raw.push_back(time_calls(world, [&] { impl.raw(); })); };
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
  return all_ok != 0;
}

}  // namespace

int main(int argc, char** argv) {
  vmoe::MpiRuntime mpi(&argc, &argv);
  vmoe::MpiCommunicator world;
  gflags::SetUsageMessage(
      "All-to-all bandwidth of our Communicator against the raw call (MPI_Alltoall, or grouped "
      "ncclSend/ncclRecv with --device=cuda).");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_device != "cpu" && FLAGS_device != "shared" && FLAGS_device != "cuda") {
    if (world.rank() == 0)
      std::fprintf(stderr, "--device must be cpu, shared or cuda; got '%s'\n",
                   FLAGS_device.c_str());
    return 2;
  }
  if (FLAGS_rounds < 1) {
    if (world.rank() == 0) std::fprintf(stderr, "--rounds must be at least 1\n");
    return 2;
  }
  try {
    if (FLAGS_device == "cpu") {
      CpuAllToAll impl(world);
      return run(world, impl, "") ? 0 : 1;
    }
    if (FLAGS_device == "shared") {
      SharedAllToAll impl(world);
      return run(world, impl, " in shared memory (ours: written in place)") ? 0 : 1;
    }
#ifdef VMOE_HAVE_NCCL
    CudaAllToAll impl(world, vmoe::choose_device(-1));
    return run(world, impl, " on CUDA devices (NCCL)") ? 0 : 1;
#else
    if (world.rank() == 0)
      std::fprintf(stderr,
                   "--device=cuda: this build has no CUDA backend and no NCCL; configure with "
                   "-DVMOE_CUDA=ON (CUDA toolkit and NCCL required)\n");
    return 2;
#endif
  } catch (const std::exception& e) {
    // One rank's failure would leave the others waiting in a collective.
    std::fprintf(stderr, "rank %d: %s\n", world.rank(), e.what());
    world.abort(1);
  }
}
