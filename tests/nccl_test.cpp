// NcclCommunicator: every collective on device buffers against the expected
// values, split, and the routing of host buffers to the MPI twin. Buffers are
// filled and read back with copies queued on the compute stream, with no host
// synchronisation around the collectives, so the tests also check that they
// are ordered on that stream. Runs under mpirun with 1, 2 and 4 ranks; skipped
// on every rank unless each rank has a CUDA device to itself.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/device.h"
#include "comm/mpi_communicator.h"
#include "comm/nccl_communicator.h"
#include "tests/mpi_test_util.h"

namespace vmoe {
namespace {

using testing::world;

// Devices visible to this process (0 when there is no driver or device).
int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

// Why the tests cannot run ("" when they can), the same on every rank: a
// rank skipping alone would leave the others waiting in a collective. NCCL
// needs one device per rank of a node.
const std::string& skip_reason() {
  static const std::string reason = [] {
    const int devices = cuda_device_count();
    int64_t missing = devices == 0 ? 2 : (local_rank() >= devices ? 1 : 0);
    world().all_reduce(&missing, 1, ReduceOp::kMax);
    if (missing == 2) return std::string("no CUDA device: NcclCommunicator needs a GPU per rank");
    if (missing == 1)
      return std::string("fewer CUDA devices than ranks on a node: NCCL needs a GPU per rank");
    return std::string();
  }();
  return reason;
}

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(&ptr_, std::max<size_t>(n * sizeof(T), 1)) != cudaSuccess)
      throw std::runtime_error("cudaMalloc failed");
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return static_cast<T*>(ptr_); }
  size_t size() const { return n_; }

 private:
  void* ptr_ = nullptr;
  size_t n_;
};

class Nccl : public ::testing::Test {
 public:
  void SetUp() override {
    if (!skip_reason().empty()) GTEST_SKIP() << skip_reason();
    ASSERT_EQ(cudaSetDevice(choose_device(-1)), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
    comm_ = std::make_unique<NcclCommunicator>(world(), stream_);
  }
  void TearDown() override {
    comm_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Host -> device, queued on the compute stream.
  template <typename T>
  void upload(const DeviceBuffer<T>& d, const std::vector<T>& h) {
    ASSERT_EQ(h.size(), d.size());
    ASSERT_EQ(cudaMemcpyAsync(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice,
                              stream_),
              cudaSuccess);
  }
  // Fills with all-ones bytes (NaN for floats), queued on the compute stream.
  template <typename T>
  void poison(const DeviceBuffer<T>& d) {
    ASSERT_EQ(cudaMemsetAsync(d.get(), 0xff, d.size() * sizeof(T), stream_), cudaSuccess);
  }
  // Device -> host after everything queued on the compute stream.
  template <typename T>
  std::vector<T> download(const DeviceBuffer<T>& d) {
    std::vector<T> h(d.size());
    EXPECT_EQ(cudaMemcpyAsync(h.data(), d.get(), h.size() * sizeof(T), cudaMemcpyDeviceToHost,
                              stream_),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    return h;
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<NcclCommunicator> comm_;
};

float pattern(int from, int to, int64_t i) { return 1e4f * from + 10.0f * to + static_cast<float>(i % 7); }

TEST_F(Nccl, ConstructedOverTheWorld) {
  EXPECT_EQ(comm_->rank(), world().rank());
  EXPECT_EQ(comm_->size(), world().size());
  EXPECT_EQ(comm_->host().size(), world().size());
  EXPECT_EQ(comm_->compute_stream(), stream_);
  EXPECT_NE(comm_->comm_stream(), stream_);
  EXPECT_NE(comm_->handle(), nullptr);
  comm_->barrier();
}

TEST_F(Nccl, AllToAllFloat) {
  const int n = comm_->size(), r = comm_->rank();
  const int64_t chunk = 1000;
  std::vector<float> send(static_cast<size_t>(n * chunk));
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < chunk; ++i) send[p * chunk + i] = pattern(r, p, i);
  DeviceBuffer<float> dsend(send.size()), drecv(send.size());
  upload(dsend, send);
  poison(drecv);
  comm_->all_to_all(dsend.get(), drecv.get(), chunk);
  const std::vector<float> recv = download(drecv);
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < chunk; ++i)
      ASSERT_EQ(recv[p * chunk + i], pattern(p, r, i)) << "from " << p << " element " << i;
}

TEST_F(Nccl, AllToAllInt32) {
  const int n = comm_->size(), r = comm_->rank();
  const int64_t chunk = 3;
  std::vector<int32_t> send(static_cast<size_t>(n * chunk));
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < chunk; ++i) send[p * chunk + i] = 1000 * r + 10 * p + static_cast<int32_t>(i);
  DeviceBuffer<int32_t> dsend(send.size()), drecv(send.size());
  upload(dsend, send);
  poison(drecv);
  comm_->all_to_all(dsend.get(), drecv.get(), chunk);
  const std::vector<int32_t> recv = download(drecv);
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < chunk; ++i)
      EXPECT_EQ(recv[p * chunk + i], 1000 * p + 10 * r + i) << "from " << p;
}

TEST_F(Nccl, AllToAllBytes) {
  const int n = comm_->size(), r = comm_->rank();
  const int64_t chunk = 13;  // odd, so nothing is moved as wider words
  std::vector<uint8_t> send(static_cast<size_t>(n * chunk));
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < chunk; ++i) send[p * chunk + i] = static_cast<uint8_t>(50 * r + 7 * p + i);
  DeviceBuffer<uint8_t> dsend(send.size()), drecv(send.size());
  upload(dsend, send);
  poison(drecv);
  comm_->all_to_all_bytes(dsend.get(), drecv.get(), chunk);
  const std::vector<uint8_t> recv = download(drecv);
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < chunk; ++i)
      EXPECT_EQ(recv[p * chunk + i], static_cast<uint8_t>(50 * p + 7 * r + i)) << "from " << p;
}

// Sum and max of rank + i (exact in every type) over `count` elements.
template <typename T, typename Fixture>
void check_all_reduce(Fixture& f, NcclCommunicator& comm) {
  const int n = comm.size(), r = comm.rank();
  const int64_t count = 1027;
  std::vector<T> values(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) values[i] = static_cast<T>(r + i);
  DeviceBuffer<T> sum(values.size()), max(values.size());
  f.upload(sum, values);
  f.upload(max, values);
  comm.all_reduce(sum.get(), count, ReduceOp::kSum);
  comm.all_reduce(max.get(), count, ReduceOp::kMax);
  const std::vector<T> sums = f.download(sum), maxima = f.download(max);
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(sums[i], static_cast<T>(n * i + n * (n - 1) / 2)) << i;
    ASSERT_EQ(maxima[i], static_cast<T>(n - 1 + i)) << i;
  }
}

TEST_F(Nccl, AllReduceFloat) { check_all_reduce<float>(*this, *comm_); }
TEST_F(Nccl, AllReduceDouble) { check_all_reduce<double>(*this, *comm_); }
TEST_F(Nccl, AllReduceInt64) {
  check_all_reduce<int64_t>(*this, *comm_);
  // Beyond 32 bits.
  DeviceBuffer<int64_t> big(1);
  upload(big, std::vector<int64_t>{int64_t{1} << 40});
  comm_->all_reduce(big.get(), 1, ReduceOp::kSum);
  EXPECT_EQ(download(big)[0], int64_t{comm_->size()} << 40);
}

TEST_F(Nccl, BroadcastFromEveryRoot) {
  const int n = comm_->size(), r = comm_->rank();
  const int64_t bytes = 4099;
  for (int root = 0; root < n; ++root) {
    std::vector<uint8_t> data(static_cast<size_t>(bytes));
    for (int64_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>(r == root ? 3 * root + i : 0xee);
    DeviceBuffer<uint8_t> d(data.size());
    upload(d, data);
    comm_->broadcast(d.get(), bytes, root);
    const std::vector<uint8_t> got = download(d);
    for (int64_t i = 0; i < bytes; ++i)
      ASSERT_EQ(got[i], static_cast<uint8_t>(3 * root + i)) << "root " << root << " byte " << i;
  }
  EXPECT_THROW(comm_->broadcast(nullptr, 1, n), std::invalid_argument);
}

TEST_F(Nccl, AllGatherInRankOrder) {
  const int n = comm_->size(), r = comm_->rank();
  const std::vector<int32_t> mine = {r, r * r, -r};
  DeviceBuffer<int32_t> send(mine.size()), recv(mine.size() * n);
  upload(send, mine);
  poison(recv);
  comm_->all_gather(send.get(), recv.get(), static_cast<int64_t>(mine.size() * sizeof(int32_t)));
  const std::vector<int32_t> all = download(recv);
  for (int p = 0; p < n; ++p) {
    EXPECT_EQ(all[3 * p], p);
    EXPECT_EQ(all[3 * p + 1], p * p);
    EXPECT_EQ(all[3 * p + 2], -p);
  }
}

TEST_F(Nccl, SplitFormsDeviceGroups) {
  const int n = comm_->size(), r = comm_->rank();
  std::unique_ptr<Communicator> half_base = comm_->split(r % 2, r);
  auto* half = dynamic_cast<NcclCommunicator*>(half_base.get());
  ASSERT_NE(half, nullptr);
  EXPECT_EQ(half->size(), (n + 1 - r % 2) / 2);
  EXPECT_EQ(half->rank(), r / 2);
  EXPECT_EQ(half->compute_stream(), stream_);
  // Device all-reduce and all-to-all within the group.
  DeviceBuffer<int64_t> one(1);
  upload(one, std::vector<int64_t>{1});
  half->all_reduce(one.get(), 1, ReduceOp::kSum);
  EXPECT_EQ(download(one)[0], half->size());
  const int m = half->size(), q = half->rank();
  std::vector<float> send(static_cast<size_t>(m));
  for (int p = 0; p < m; ++p) send[p] = pattern(q, p, 0);
  DeviceBuffer<float> dsend(send.size()), drecv(send.size());
  upload(dsend, send);
  poison(drecv);
  half->all_to_all(dsend.get(), drecv.get(), 1);
  const std::vector<float> recv = download(drecv);
  for (int p = 0; p < m; ++p) EXPECT_EQ(recv[p], pattern(p, q, 0));
  // Host values go through the group's twin.
  EXPECT_EQ(all_reduce_value(*half, int64_t{1}), half->size());

  // The key orders the ranks: reversed here.
  std::unique_ptr<Communicator> reversed = comm_->split(0, n - r);
  EXPECT_EQ(reversed->rank(), n - 1 - r);
  DeviceBuffer<int32_t> mine(1), all(static_cast<size_t>(n));
  upload(mine, std::vector<int32_t>{r});
  reversed->all_gather(mine.get(), all.get(), sizeof(int32_t));
  const std::vector<int32_t> ranks = download(all);
  for (int p = 0; p < n; ++p) EXPECT_EQ(ranks[p], n - 1 - p);
  reversed->barrier();
}

TEST_F(Nccl, HostBuffersGoThroughMpi) {
  const int n = comm_->size(), r = comm_->rank();
  // Scalars on the stack, as the training loop reduces losses and counters.
  EXPECT_EQ(all_reduce_value(*comm_, 1.5f), 1.5f * n);
  EXPECT_EQ(all_reduce_value(*comm_, static_cast<double>(r), ReduceOp::kMax), n - 1);
  EXPECT_EQ(all_reduce_value(*comm_, int64_t{1} << 40), int64_t{n} << 40);
  std::vector<float> f = {1.0f, static_cast<float>(r)};
  comm_->all_reduce(f.data(), 2, ReduceOp::kSum);
  EXPECT_EQ(f[0], n);
  EXPECT_EQ(f[1], n * (n - 1) / 2);

  std::vector<float> send(static_cast<size_t>(n)), recv(send.size());
  for (int p = 0; p < n; ++p) send[p] = pattern(r, p, 0);
  comm_->all_to_all(send.data(), recv.data(), 1);
  for (int p = 0; p < n; ++p) EXPECT_EQ(recv[p], pattern(p, r, 0));
  std::vector<int32_t> isend(static_cast<size_t>(n)), irecv(isend.size());
  for (int p = 0; p < n; ++p) isend[p] = 100 * r + p;
  comm_->all_to_all(isend.data(), irecv.data(), 1);
  for (int p = 0; p < n; ++p) EXPECT_EQ(irecv[p], 100 * p + r);
  std::vector<char> bsend(static_cast<size_t>(n)), brecv(bsend.size());
  for (int p = 0; p < n; ++p) bsend[p] = static_cast<char>('a' + r * 4 + p);
  comm_->all_to_all_bytes(bsend.data(), brecv.data(), 1);
  for (int p = 0; p < n; ++p) EXPECT_EQ(brecv[p], static_cast<char>('a' + p * 4 + r));

  int64_t value = r == 0 ? 42 : -1;
  comm_->broadcast(&value, sizeof value, 0);
  EXPECT_EQ(value, 42);
  std::vector<int32_t> all(static_cast<size_t>(n));
  const int32_t square = r * r;
  comm_->all_gather(&square, all.data(), sizeof square);
  for (int p = 0; p < n; ++p) EXPECT_EQ(all[p], p * p);

  // Pinned host memory is host memory too.
  double* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), 2 * sizeof(double)), cudaSuccess);
  pinned[0] = 1.0;
  pinned[1] = r;
  comm_->all_reduce(pinned, 2, ReduceOp::kMax);
  EXPECT_EQ(pinned[0], 1.0);
  EXPECT_EQ(pinned[1], n - 1);
  cudaFreeHost(pinned);

  // Host and device buffers in one call: refused on every rank, before any
  // communication.
  DeviceBuffer<float> device(static_cast<size_t>(n));
  EXPECT_THROW(comm_->all_to_all(send.data(), device.get(), 1), std::invalid_argument);
  EXPECT_THROW(comm_->all_gather(device.get(), recv.data(), sizeof(float)), std::invalid_argument);
  comm_->barrier();
}

TEST_F(Nccl, EmptyCallsAreNoOps) {
  comm_->all_reduce(static_cast<float*>(nullptr), 0, ReduceOp::kSum);
  comm_->all_to_all(static_cast<const int32_t*>(nullptr), nullptr, 0);
  comm_->broadcast(nullptr, 0, 0);
  comm_->all_gather(nullptr, nullptr, 0);
  EXPECT_THROW(comm_->all_reduce(static_cast<double*>(nullptr), -1, ReduceOp::kSum),
               std::invalid_argument);
  comm_->barrier();
}

}  // namespace
}  // namespace vmoe
