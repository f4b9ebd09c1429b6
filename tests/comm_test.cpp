// The MPI communicator and the CPU stand-in for the GPU path's world, process
// groups, the one-GPU-per-rank check, expert placement, and the
// expert-parallel MoE layer against the single-process one. Runs under mpirun with 1, 2 and 4 ranks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <numeric>

#include "comm/device_assignment.h"
#include "comm/mpi_communicator.h"
#include "comm/peer_buffers.h"
#include "comm/process_groups.h"
#include "comm/stand_in_communicator.h"
#include "core/cpu/cpu_backend.h"
#include "core/phase_timer.h"
#include "core/workspace.h"
#include "parallel/grad_sync.h"
#include "parallel/moe_layer.h"
#include "tests/mpi_test_util.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using ::testing::HasSubstr;
using testing::world;

// Every collective on `comm` (the MPI world, or the stand-in for the GPU
// path's world) moves and reduces what it should.
void check_all_to_all(Communicator& comm) {
  const int n = comm.size(), r = comm.rank();
  const int64_t chunk = 1000;
  std::vector<float> send(static_cast<size_t>(n * chunk)), recv(send.size());
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < chunk; ++i) send[p * chunk + i] = 1e4f * r + 10.0f * p + i % 7;
  comm.all_to_all(send.data(), recv.data(), chunk);
  for (int p = 0; p < n; ++p)
    for (int64_t i = 0; i < chunk; ++i)
      ASSERT_EQ(recv[p * chunk + i], 1e4f * p + 10.0f * r + i % 7) << p << " " << i;
  std::vector<int32_t> isend(static_cast<size_t>(n)), irecv(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) isend[p] = 100 * r + p;
  comm.all_to_all(isend.data(), irecv.data(), 1);
  for (int p = 0; p < n; ++p) EXPECT_EQ(irecv[p], 100 * p + r);
  std::vector<uint16_t> hsend(static_cast<size_t>(n)), hrecv(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) hsend[p] = static_cast<uint16_t>(1000 * r + p);
  comm.all_to_all(hsend.data(), hrecv.data(), 1);
  for (int p = 0; p < n; ++p) EXPECT_EQ(hrecv[p], 1000 * p + r);
}

void check_reductions(Communicator& comm) {
  const int n = comm.size(), r = comm.rank();
  float f[2] = {1.0f, static_cast<float>(r)};
  comm.all_reduce(f, 2, ReduceOp::kSum);
  EXPECT_EQ(f[0], n);
  EXPECT_EQ(f[1], n * (n - 1) / 2);
  EXPECT_EQ(all_reduce_value(comm, static_cast<double>(r), ReduceOp::kMax), n - 1);
  EXPECT_EQ(all_reduce_value(comm, int64_t{1} << 40), int64_t{n} << 40);
  int64_t value = r == 0 ? 42 : -1;
  comm.broadcast(&value, sizeof value, 0);
  EXPECT_EQ(value, 42);
  std::vector<int32_t> all(static_cast<size_t>(n));
  const int32_t mine = r * r;
  comm.all_gather(&mine, all.data(), sizeof mine);
  for (int p = 0; p < n; ++p) EXPECT_EQ(all[p], p * p);
  comm.barrier();
}

TEST(Communicator, AllToAllMovesEveryChunk) { check_all_to_all(world()); }
TEST(Communicator, ReductionsBroadcastGather) { check_reductions(world()); }

TEST(StandInCommunicator, CollectivesAndSplitsWithoutBeingMpi) {
  StandInCommunicator stand_in(world());
  EXPECT_EQ(dynamic_cast<MpiCommunicator*>(static_cast<Communicator*>(&stand_in)), nullptr);
  EXPECT_EQ(stand_in.rank(), world().rank());
  EXPECT_EQ(stand_in.size(), world().size());
  check_all_to_all(stand_in);
  check_reductions(stand_in);
  // Halves (or the whole world on 1 rank), still stand-ins, as NCCL's splits are NCCL.
  const int half = world().size() > 1 ? world().rank() % 2 : 0;
  std::unique_ptr<Communicator> sub = stand_in.split(half, world().rank());
  EXPECT_NE(dynamic_cast<StandInCommunicator*>(sub.get()), nullptr);
  EXPECT_EQ(sub->size(), world().size() > 1 ? world().size() / 2 : 1);
  check_reductions(*sub);
}

TEST(ProcessGroups, HostBesideAWorldThatIsNotMpi) {
  StandInCommunicator stand_in(world());
  ProcessGroups groups(stand_in, world(), 4, 0);
  EXPECT_EQ(&groups.world(), &stand_in);
  EXPECT_EQ(&groups.host(), &world());
  EXPECT_NE(dynamic_cast<StandInCommunicator*>(&groups.expert_parallel()), nullptr);
  EXPECT_NE(dynamic_cast<StandInCommunicator*>(&groups.expert_replicas()), nullptr);
  EXPECT_EQ(groups.placement().ep_size, std::min(world().size(), 4));
  // A world that is not MPI (NCCL's device memory) never shares host buffers.
  EXPECT_EQ(groups.expert_peer_buffers(), nullptr);
  // The CPU path: one MPI communicator is both; its EP group on this node
  // shares memory unless told to send (and one rank has nobody to share with).
  ProcessGroups cpu(world(), 4, 0);
  EXPECT_EQ(&cpu.world(), &cpu.host());
  EXPECT_EQ(cpu.expert_peer_buffers() != nullptr, cpu.placement().ep_size > 1);
  EXPECT_EQ(ProcessGroups(world(), 4, 0, ExchangeMode::kAllToAll).expert_peer_buffers(), nullptr);
  if (world().size() == 1) return;
  // A host communicator of other ranks is refused.
  std::unique_ptr<MpiCommunicator> alone = world().split_mpi(world().rank(), 0);
  try {
    ProcessGroups bad(stand_in, *alone, 4, 0);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("the host communicator (rank 0 of 1) is not the world"));
  }
}

TEST(DeviceAssignment, TwoRanksOnOneGpuAreNamed) {
  const RankDevice a{"node1", "uuid-a", 0, 1}, b{"node1", "uuid-b", 1, 2};
  EXPECT_EQ(shared_device_error({a, RankDevice{"node2", "uuid-c", 0, 1}}, false), "");
  EXPECT_EQ(shared_device_error({b, RankDevice{"node1", "uuid-c", 0, 2}}, false), "");
  EXPECT_EQ(shared_device_error({a, a}, false),
            "--backend=cuda needs one GPU per rank: ranks 0 and 1 both use GPU 0 on node1 (1 "
            "visible); start at most 1 rank per node or set --device");
  EXPECT_THAT(shared_device_error({b, a, b}, true),
              HasSubstr("ranks 0 and 2 both use GPU 1 on node1 (2 visible); --device gives every "
                        "rank the same GPU index"));
  // One GPU under two indices (CUDA_VISIBLE_DEVICES differs between the ranks).
  EXPECT_THAT(shared_device_error({a, RankDevice{"node1", "uuid-a", 3, 4}}, false),
              HasSubstr("both use GPU 0 (index 3 on rank 1) on node1"));
}

TEST(DeviceAssignment, GatheredInRankOrder) {
  const int r = world().rank();
  const RankDevice mine{"host-" + std::to_string(r % 2), "gpu-" + std::to_string(r), r, 2};
  const std::vector<RankDevice> all = gather_rank_devices(world(), mine);
  ASSERT_EQ(static_cast<int>(all.size()), world().size());
  for (int p = 0; p < world().size(); ++p) {
    EXPECT_EQ(all[p].node, "host-" + std::to_string(p % 2));
    EXPECT_EQ(all[p].uuid, "gpu-" + std::to_string(p));
    EXPECT_EQ(all[p].index, p);
    EXPECT_EQ(all[p].visible, 2);
  }
  EXPECT_EQ(shared_device_error(all, false), "");
}

TEST(Placement, AutomaticSizeFitsTheExperts) {
  // 5 experts: no group larger than 1 divides them on 2 or 4 ranks.
  ProcessGroups five(world(), 5, 0);
  EXPECT_EQ(five.placement().ep_size, world().size() == 1 ? 1 : (world().size() % 5 == 0 ? 5 : 1));
  ProcessGroups eight(world(), 8, 0);
  EXPECT_EQ(eight.placement().ep_size, world().size());
}

TEST(PeerBuffers, EachRankWritesIntoEverySegmentAndReadsThemAll) {
  const int n = world().size(), r = world().rank();
  std::unique_ptr<PeerBuffers> peers = PeerBuffers::create(world());
  if (n == 1) {
    EXPECT_EQ(peers, nullptr);  // nobody to share with
    return;
  }
  ASSERT_NE(peers, nullptr);  // every rank of the test is on this node
  EXPECT_EQ(peers->rank(), r);
  EXPECT_EQ(peers->size(), n);
  const int64_t page = PeerBuffers::page_bytes();
  EXPECT_THROW(peers->span(0, page + 8), std::invalid_argument);  // not whole pages
  auto value = [](int key, int writer, int owner, int64_t i) {
    return key * 1000003 + writer * 10007 + owner * 101 + i;
  };
  // Rank r writes slot r of every rank's segment of each key: one row index
  // over all segments, as the MoE layer's scatters use it.
  auto write = [&](int key, const PeerBuffers::Span& span, int64_t slot) {
    for (int q = 0; q < n; ++q) {
      auto* at = reinterpret_cast<int64_t*>(span.segment(q)) + r * slot;
      for (int64_t i = 0; i < slot; ++i) at[i] = value(key, r, q, i);
    }
  };
  auto check = [&](int key, const PeerBuffers::Span& span, int64_t slot) {
    for (int q = 0; q < n; ++q) {  // every segment, each writer's slot
      const auto* seg = reinterpret_cast<const int64_t*>(span.segment(q));
      for (int w = 0; w < n; ++w)
        for (int64_t i = 0; i < slot; ++i)
          ASSERT_EQ(seg[w * slot + i], value(key, w, q, i)) << "key " << key << " segment " << q;
    }
  };
  const PeerBuffers::Span a = peers->span(1, page), b = peers->span(2, 3 * page);
  ASSERT_NE(a.base, nullptr);
  ASSERT_NE(b.base, nullptr);
  EXPECT_EQ(a.stride, page);
  EXPECT_EQ(b.stride, 3 * page);
  EXPECT_EQ(peers->bytes(2), 3 * page);
  EXPECT_EQ(peers->bytes(7), 0);
  const int64_t slot_a = page / 8 / n, slot_b = 3 * page / 8 / n;
  write(1, a, slot_a);
  write(2, b, slot_b);
  peers->publish();
  check(1, a, slot_a);
  check(2, b, slot_b);
  // Asked for less, a buffer keeps its stride and its contents (a barrier
  // first: nobody writes what a peer may still be reading).
  peers->publish();
  const PeerBuffers::Span a_again = peers->span(1, page), b_less = peers->span(2, page);
  EXPECT_EQ(a_again.base, a.base);
  EXPECT_EQ(b_less.base, b.base);
  EXPECT_EQ(b_less.stride, 3 * page);
  check(2, b, slot_b);
  // Asked for more, it grows: written and read again at the new stride.
  const PeerBuffers::Span grown = peers->span(1, 4 * page);
  ASSERT_NE(grown.base, nullptr);
  EXPECT_EQ(grown.stride, 4 * page);
  write(1, grown, 4 * page / 8 / n);
  peers->publish();
  check(1, grown, 4 * page / 8 / n);
  check(2, b, slot_b);  // the other buffer untouched
}

// A window too large for the directory Open MPI maps it from is never
// allocated (Open MPI would fail it on one rank while its peers wait in it):
// every rank gives the buffers up together, and callers send instead. The
// buffers handed out before stay readable: a caller may hold data in them.
TEST(PeerBuffers, GivenUpOnEveryRankWhereAWindowDoesNotFit) {
  EXPECT_GT(free_bytes_in("/"), 0);
  EXPECT_EQ(free_bytes_in("/no/such/directory"), -1);
  std::unique_ptr<PeerBuffers> peers = PeerBuffers::create(world());
  if (peers == nullptr) GTEST_SKIP() << "one rank: nothing to share";
  ASSERT_FALSE(shared_window_directory().empty()) << "Open MPI's osc_sm_backing_directory";
  const int64_t page = PeerBuffers::page_bytes();
  const PeerBuffers::Span fits = peers->span(0, page);  // a window that fits
  ASSERT_NE(fits.base, nullptr);
  const int r = world().rank();
  *reinterpret_cast<int*>(fits.segment(r)) = 7 * r + 1;
  peers->publish();
  EXPECT_EQ(peers->span(1, int64_t{1} << 52).base, nullptr);  // 4 PiB a rank: fits nowhere
  EXPECT_TRUE(peers->given_up());
  EXPECT_EQ(peers->span(0, page).base, nullptr);  // for good, even where it would fit
  for (int q = 0; q < world().size(); ++q)
    EXPECT_EQ(*reinterpret_cast<const int*>(fits.segment(q)), 7 * q + 1);
  peers->publish();  // still a barrier
}

TEST(Communicator, SplitFormsGroups) {
  const int r = world().rank();
  std::unique_ptr<Communicator> half = world().split(r % 2, r);
  EXPECT_EQ(half->size(), (world().size() + 1 - r % 2) / 2);
  EXPECT_EQ(half->rank(), r / 2);
  EXPECT_EQ(all_reduce_value(*half, int64_t{1}), half->size());
}

TEST(Placement, ExpertsPerRankAndReplicas) {
  ExpertPlacement p = place_experts(4, 3, 8, 4);
  EXPECT_EQ(p.local_experts, 2);
  EXPECT_EQ(p.first_expert, 6);
  EXPECT_EQ(p.world_replicas, 1);
  p = place_experts(4, 3, 8, 2);  // two EP groups of 2: rank 3 is EP rank 1
  EXPECT_EQ(p.ep_rank, 1);
  EXPECT_EQ(p.first_expert, 4);
  EXPECT_EQ(p.world_replicas, 2);
  p = place_experts(8, 5, 2, 4);  // P > E: 2 replicas per group, 2 groups
  EXPECT_EQ(p.local_experts, 1);
  EXPECT_EQ(p.first_expert, 0);  // rank 5 is EP rank 1: expert 1 / 2 = 0, its replica 1
  EXPECT_EQ(p.replica_index, 1);
  EXPECT_EQ(p.world_replicas, 4);
  auto error = [](int world, int experts, int ep) -> std::string {
    try {
      place_experts(world, 0, experts, ep);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_THAT(error(4, 8, 3), HasSubstr("must divide the number of ranks"));
  EXPECT_THAT(error(6, 4, 6), HasSubstr("--expert_parallel=6 with 6 ranks and --num_experts=4: "
                                        "the expert-parallel size must divide the number of "
                                        "experts, or be a multiple of it"));
}

// The sharded layer (this rank's slice of the batch, its experts, exchanges)
// must compute what one process computes on the whole batch: the same
// outputs and input gradients for this rank's rows, and, after the gradient
// sync, the same parameter gradients.
class ShardedMoe : public ::testing::TestWithParam<std::tuple<int, bool, int>> {};

TEST_P(ShardedMoe, MatchesOneProcess) {
  const auto [experts, batch_priority, ep_size] = GetParam();
  const int n = world().size(), r = world().rank();
  if (n % ep_size != 0 || (experts % ep_size != 0 && ep_size % experts != 0)) GTEST_SKIP();
  MoeConfig m;
  m.layers = {0};
  m.num_experts = experts;
  m.num_selected = 2;
  m.group_size = 2;
  m.capacity_ratio = 0.5;  // drops happen
  m.batch_priority = batch_priority;
  m.importance_loss_weight = m.load_loss_weight = 0.05f;
  const int dim = 8, hidden = 12, tokens = 5;
  const int64_t per_rank = 8, global = per_rank * n, rows = per_rank * tokens;
  const int64_t groups_per_rank = per_rank / m.group_size;
  ProcessGroups groups(world(), experts, ep_size);
  const ExpertPlacement& place = groups.placement();
  if (place.replicas > 1 && groups_per_rank % place.replicas != 0) GTEST_SKIP();

  CpuBackend be;
  Workspace ws(be);
  const Pass pass{.training = true, .step = 3, .first_image = r * per_rank, .global_images = global};
  // Reference: every expert, the whole batch.
  ParamStore ref_store;
  MoeLayer ref(be, ref_store, "moe", m, dim, hidden, 5, 0);
  ref_store.allocate(be);
  ref_store.initialize(9);
  const std::vector<float> x = testing::random_normal(global * tokens * dim, 17);
  const std::vector<float> dy = testing::random_normal(x.size(), 18);
  Tensor xd(be, {global * tokens, dim}), dyd(be, {global * tokens, dim});
  Tensor y(be, {global * tokens, dim}), dx(be, {global * tokens, dim});
  xd.copy_from_host(x);
  dyd.copy_from_host(dy);
  ref.forward(xd.data(), global, tokens, y.data(),
              Pass{.training = true, .step = 3, .global_images = global});
  ref_store.zero_grads();
  ref.backward(xd.data(), dyd.data(), dx.data(), ws);

  // Every rank of these tests runs on one node: an EP group of several
  // shares memory, so its exchanges run in place unless told otherwise.
  PeerBuffers* peers = groups.expert_peer_buffers();
  EXPECT_EQ(peers != nullptr, place.ep_size > 1);
  // Expert buffers packed (the CPU's default: live rows travel with them),
  // then in the fixed layout a GPU computes whole; each moved in place
  // (shared memory) and by all-to-alls.
  // The same rows meet the same GEMMs either way: the same bits.
  // Buffers given up (their window did not fit) send as all-to-alls do.
  std::unique_ptr<PeerBuffers> given_up;
  if (peers != nullptr) {
    given_up = PeerBuffers::create(dynamic_cast<const MpiCommunicator&>(groups.expert_parallel()));
    ASSERT_EQ(given_up->span(0, int64_t{1} << 52).base, nullptr);
  }
  enum Exchange { kInPlace, kAllToAll, kGivenUp };
  std::vector<float> in_place_y, in_place_dx;
  for (const auto& [packed, exchange] : {std::pair{true, kInPlace},
                                         {true, kAllToAll},
                                         {true, kGivenUp},
                                         {false, kInPlace},
                                         {false, kAllToAll}}) {
    const bool in_place = exchange == kInPlace;
    SCOPED_TRACE(std::string(packed ? "packed" : "fixed layout") + (in_place ? ", in place"
                                                                    : exchange == kAllToAll
                                                                        ? ", all-to-all"
                                                                        : ", given up"));
    be.set_skip_empty_slots(packed);
    ParamStore store;
    PeerBuffers* exchange_peers = in_place               ? peers
                                  : exchange == kGivenUp ? given_up.get()
                                                         : nullptr;
    MoeLayer sharded(be, store, "moe", m, dim, hidden, 5, 0,
                     ExpertSharding{place, &groups.expert_parallel(), exchange_peers});
    store.allocate(be);
    store.initialize(9);
    EXPECT_EQ(sharded.exchanges(), place.ep_size > 1);
    const float* xs = xd.data() + r * rows * dim;
    Tensor ys(be, {rows, dim}), dxs(be, {rows, dim});
    // Each of the pass's barriers has its own wait phase, once per pass
    // (the live counts' exchange: packed only).
    PhaseTimer& timer = PhaseTimer::instance();
    timer.enable(true);
    timer.keep_spans("exchange_wait.");
    sharded.forward(xs, per_rank, tokens, ys.data(), pass);
    store.zero_grads();
    sharded.backward(xs, dyd.data() + r * rows * dim, dxs.data(), ws);
    timer.totals();
    std::map<std::string, size_t> waits;
    for (const auto& [name, spans] : timer.spans()) waits[name] = spans.size();
    timer.keep_spans(nullptr);
    timer.enable(false);
    std::map<std::string, size_t> want_waits;
    if (sharded.exchanges() && packed) want_waits["exchange_wait.live_counts"] = 1;
    if (sharded.in_place()) {
      for (const char* site : {"dispatch", "experts", "combine_backward", "experts_backward"})
        want_waits[std::string("exchange_wait.") + site] = 1;
    }
    EXPECT_EQ(waits, want_waits);
    EXPECT_EQ(sharded.in_place(), in_place && place.ep_size > 1);
    GradientSync(store, groups, 1000).all_reduce();

    const std::vector<float> yr = y.to_host(), dxr = dx.to_host();
    const std::vector<float> ya = ys.to_host(), dxa = dxs.to_host();
    if (in_place) {
      in_place_y = ya;
      in_place_dx = dxa;
    } else {
      EXPECT_EQ(ya, in_place_y);
      EXPECT_EQ(dxa, in_place_dx);
    }
    for (int64_t i = 0; i < rows * dim; ++i) {
      ASSERT_NEAR(ya[i], yr[r * rows * dim + i], 1e-5f) << "y " << i;
      ASSERT_NEAR(dxa[i], dxr[r * rows * dim + i], 1e-5f) << "dx " << i;
    }
    EXPECT_NEAR(all_reduce_value(world(), sharded.aux_loss()), ref.aux_loss(), 1e-6);
    // Parameter gradients: the router's, and this rank's experts' slices.
    for (ParamId id = 0; id < store.count(); ++id) {
      const ParamSpec& spec = store.spec(id);
      const ParamId rid = *ref_store.find(spec.name);
      const int64_t count = store.numel(id);
      // An expert parameter is this rank's slice of the reference's [E, ...].
      const int64_t offset =
          spec.region == Region::kExpert ? count / spec.shape[0] * place.first_expert : 0;
      std::vector<float> got(count), want(count);
      be.copy_to_host(got.data(), store.grad(id), count * sizeof(float));
      be.copy_to_host(want.data(), ref_store.grad(rid) + offset, count * sizeof(float));
      for (int64_t i = 0; i < count; ++i) ASSERT_NEAR(got[i], want[i], 1e-5f) << spec.name << i;
    }
  }
}
INSTANTIATE_TEST_SUITE_P(Layouts, ShardedMoe,
                         ::testing::Combine(::testing::Values(2, 4), ::testing::Bool(),
                                            ::testing::Values(1, 2, 4)),
                         [](const auto& info) {
                           std::string name = "E";
                           name += std::to_string(std::get<0>(info.param));
                           name += std::get<1>(info.param) ? "_bpr_P" : "_vanilla_P";
                           name += std::to_string(std::get<2>(info.param));
                           return name;
                         });

}  // namespace
}  // namespace vmoe
