// Checkpoints under mpirun (1, 2, 4 ranks): every rank writes its shard and
// reads back under any layout; fine-tuning rules; corruption is detected.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "checkpoints/checkpoint.h"
#include "checkpoints/checkpoint_dir.h"
#include "checkpoints/position_embedding.h"
#include "comm/mpi_communicator.h"
#include "comm/stand_in_communicator.h"
#include "core/random.h"
#ifdef VMOE_HAVE_CUDA
#include "comm/device.h"
#include "core/cuda/cuda_backend.h"
#endif
#include "core/cpu/cpu_backend.h"
#include "parallel/moe_model.h"
#include "tests/mpi_test_util.h"
#include "tests/test_util.h"

namespace vmoe {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;
using testing::SharedDir;
using testing::world;

// A tiny V-MoE (4 experts in block 1) on this rank's expert placement, on
// the CPU backend or the one given.
struct Model {
  std::unique_ptr<Backend> backend;  // outlives the store
  Backend& be;
  MoeConfig moe;
  ParamStore store;
  std::unique_ptr<ViT> vit;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<ProcessGroups> groups;
  // `device_world`: the world that moves tensors, when it is not the MPI
  // world (the GPU path's shape); the MPI world is then only the host's.
  Model(int ep_size, ViTConfig c = testing::tiny_vit(), Communicator* device_world = nullptr,
        std::unique_ptr<Backend> on = std::make_unique<CpuBackend>())
      : backend(std::move(on)), be(*backend) {
    moe.layers = {1};
    moe.num_experts = 4;
    moe.group_size = 2;
    groups = device_world != nullptr
                 ? std::make_unique<ProcessGroups>(*device_world, world(), 4, ep_size)
                 : std::make_unique<ProcessGroups>(world(), 4, ep_size);
    vit = std::make_unique<ViT>(
        be, store, c,
        moe_extensions(be, moe, c, 1, {groups->placement(), &groups->expert_parallel()}));
    store.allocate(be);
    store.initialize(1);
    opt = std::make_unique<Optimizer>(OptimizerConfig{}, store);
  }
  std::vector<float> param(const std::string& name) {
    const ParamId id = *store.find(name);
    return Tensor::to_host_of(store.value(id), store.numel(id), be);
  }
};

// Distinct values everywhere (parameters and both Adam moments), a function
// of the global element, so any layout knows what to expect.
void fill_known(Model& m, float shift) {
  for (ParamId id = 0; id < m.store.count(); ++id) {
    const ParamSpec& s = m.store.spec(id);
    const int64_t n = m.store.numel(id), row = n / s.shape[0], first = s.global_offset * row;
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = shift + 1e-3f * (id * 1000 + ((first + i) % 997));
    m.be.copy_to_device(m.store.value(id), v.data(), n * 4);
    for (float& x : v) x += 1;
    m.be.copy_to_device(m.opt->state()[0].data() + m.store.offset(id), v.data(), n * 4);
    for (float& x : v) x += 1;
    m.be.copy_to_device(m.opt->state()[1].data() + m.store.offset(id), v.data(), n * 4);
  }
}

TEST(Checkpoint, RoundTripUnderEveryLayout) {
  SharedDir dir;
  const std::string path = dir.path + "/c.h5";
  const int n = world().size();
  Model writer(n);  // experts spread over all ranks
  fill_known(writer, 0.5f);
  CheckpointState state;
  state.step = 42;
  state.model_flags = "hidden_size=8\n";
  write_checkpoint(path, writer.store, writer.opt.get(), state, *writer.groups);
  EXPECT_EQ(read_checkpoint_state(path).step, 42);
  // Read back under every expert-parallel size this world allows.
  for (int ep : {1, 2, 4}) {
    if (n % ep != 0 && ep != 1) continue;
    Model reader(ep);
    load_checkpoint(path, reader.store, reader.opt.get(), {});
    Model expected(ep);
    fill_known(expected, 0.5f);
    EXPECT_EQ(reader.store.values().to_host(), expected.store.values().to_host()) << "ep " << ep;
    EXPECT_EQ(reader.opt->state()[1].to_host(), expected.opt->state()[1].to_host());
  }
}

TEST(Checkpoint, FineTuneReinitialisesTheHeadAndResizesPositions) {
  SharedDir dir;
  const std::string path = dir.path + "/c.h5";
  Model source(world().size());
  fill_known(source, 0.25f);
  write_checkpoint(path, source.store, nullptr, {}, *source.groups);
  ViTConfig other = testing::tiny_vit();
  other.image = {12, 12, 2};  // a 3x3 patch grid instead of 2x2
  other.num_classes = 5;
  Model target(world().size(), other);
  const std::vector<float> fresh_head = target.param("head/bias");
  const std::vector<float> fresh_router = target.param("encoder/block_1/mlp/router/kernel");
  const LoadReport r =
      load_checkpoint(path, target.store, nullptr,
                      {.optimizer = false, .skip = {std::regex("router")}, .fine_tune = true});
  EXPECT_THAT(r.reinitialised, ::testing::UnorderedElementsAre("head/kernel", "head/bias"));
  EXPECT_THAT(r.resized, ::testing::ElementsAre("pos_embedding"));
  EXPECT_THAT(r.skipped, ::testing::ElementsAre("encoder/block_1/mlp/router/kernel"));
  EXPECT_EQ(target.param("head/bias"), fresh_head);
  EXPECT_EQ(target.param("encoder/block_1/mlp/router/kernel"), fresh_router);
  EXPECT_EQ(target.param("encoder/norm/scale"), source.param("encoder/norm/scale"));
  const std::vector<float> pos = target.param("pos_embedding"), old = source.param("pos_embedding");
  ASSERT_EQ(pos.size(), 10u * 8);
  for (int d = 0; d < 8; ++d) EXPECT_EQ(pos[d], old[d]) << "the class token row is kept";
  // A shape that no rule covers is an error naming the dataset.
  ViTConfig wider = testing::tiny_vit();
  wider.hidden_size = 16;
  Model mismatch(world().size(), wider);
  EXPECT_THAT(testing::error_of([&] { load_checkpoint(path, mismatch.store, nullptr, {}); }),
              HasSubstr("/params/embedding/kernel has shape [4, 4, 2, 8] but the model expects "
                        "[4, 4, 2, 16]"));
}

TEST(Checkpoint, CorruptionIsReportedWithFileAndDataset) {
  SharedDir dir;
  const std::string path = dir.path + "/c.h5";
  Model m(world().size());
  write_checkpoint(path, m.store, m.opt.get(), {}, *m.groups);
  world().barrier();
  const std::string flipped = dir.path + "/flipped_" + std::to_string(world().rank()) + ".h5";
  const std::string cut = dir.path + "/cut_" + std::to_string(world().rank()) + ".h5";
  fs::copy_file(path, flipped);
  fs::copy_file(path, cut);
  const auto size = fs::file_size(path);
  {  // Overwrite bytes at 3/4 of the file: data (Fletcher32) or metadata (1.10 checksums).
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size * 3 / 4));
    const std::string junk(256, '\x5a');
    f.write(junk.data(), junk.size());
  }
  fs::resize_file(cut, size / 2);
  Model reader(1);  // reads every expert, so the damage is always seen
  EXPECT_THAT(testing::error_of([&] { load_checkpoint(flipped, reader.store, reader.opt.get(), {}); }),
              ::testing::AllOf(HasSubstr(flipped), HasSubstr("checksum"),
                               ::testing::ContainsRegex("(params|optimizer)/")));
  EXPECT_THAT(testing::error_of([&] { load_checkpoint(cut, reader.store, reader.opt.get(), {}); }),
              ::testing::AllOf(HasSubstr(cut), HasSubstr("truncated")));
}

TEST(Checkpoint, DirectoryKeepsTheNewestAndFallsBack) {
  SharedDir dir;
  Model m(world().size());
  CheckpointDir ckpts(dir.path, 2);
  for (int64_t step : {10, 20, 30}) {
    CheckpointState s;
    s.step = step;
    ckpts.save(m.store, m.opt.get(), s, *m.groups);
  }
  const std::vector<std::string> kept = ckpts.list();
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_THAT(kept[0], HasSubstr("ckpt-0000000030.h5"));
  world().barrier();
  if (world().rank() == 0) fs::resize_file(kept[0], fs::file_size(kept[0]) / 2);
  world().barrier();
  std::vector<std::string> warnings;
  const auto state = ckpts.load_latest(m.store, m.opt.get(), world(), [](const CheckpointState&) {},
                                       [&](const std::string& w) { warnings.push_back(w); });
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->step, 20);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("cannot resume from " + kept[0]));
}

// On GPUs the world is NCCL: checkpoints go through groups.host() (MPI-IO),
// never through the world. The stand-in world is not MPI either.
TEST(Checkpoint, SavedAndResumedUnderAWorldThatIsNotMpi) {
  SharedDir dir;
  StandInCommunicator stand_in(world());
  Model writer(world().size(), testing::tiny_vit(), &stand_in);
  fill_known(writer, 0.75f);
  CheckpointDir ckpts(dir.path, 1);
  CheckpointState s;
  s.step = 7;
  ckpts.save(writer.store, writer.opt.get(), s, *writer.groups);
  Model reader(world().size(), testing::tiny_vit(), &stand_in);
  const auto state = ckpts.load_latest(reader.store, reader.opt.get(), reader.groups->host(),
                                       [](const CheckpointState&) {}, [](const std::string&) {});
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->step, 7);
  EXPECT_EQ(reader.store.values().to_host(), writer.store.values().to_host());
  EXPECT_EQ(reader.opt->state()[0].to_host(), writer.opt->state()[0].to_host());
  EXPECT_EQ(reader.opt->state()[1].to_host(), writer.opt->state()[1].to_host());
}

#ifdef VMOE_HAVE_CUDA
// A checkpoint written from GPU memory is the file the CPU writes, and each
// backend reloads the other's bit for bit. Runs where a GPU is visible (any
// number of ranks may share it: no NCCL here); skipped elsewhere.
TEST(Checkpoint, GpuAndCpuWriteTheSameFileAndReadEachOthers) {
  if (cuda_device_count() == 0)
    GTEST_SKIP() << "no CUDA device visible to this process: the GPU checkpoint test runs only "
                    "where one exists";
  SharedDir dir;
  const int n = world().size();
  StandInCommunicator stand_in(world());  // the GPU path's shape, without NCCL
  Model cpu(n);
  Model gpu(n, testing::tiny_vit(), &stand_in, std::make_unique<CudaBackend>(choose_device()));
  fill_known(cpu, 0.5f);
  fill_known(gpu, 0.5f);
  CheckpointState s;
  s.step = 3;
  write_checkpoint(dir.path + "/cpu.h5", cpu.store, cpu.opt.get(), s, *cpu.groups);
  write_checkpoint(dir.path + "/gpu.h5", gpu.store, gpu.opt.get(), s, *gpu.groups);
  // The same tensors: both files read whole (every expert) on the CPU.
  Model from_cpu(1), from_gpu(1);
  load_checkpoint(dir.path + "/cpu.h5", from_cpu.store, from_cpu.opt.get(), {});
  load_checkpoint(dir.path + "/gpu.h5", from_gpu.store, from_gpu.opt.get(), {});
  EXPECT_EQ(from_gpu.store.values().to_host(), from_cpu.store.values().to_host());
  for (int b = 0; b < 2; ++b)
    EXPECT_EQ(from_gpu.opt->state()[b].to_host(), from_cpu.opt->state()[b].to_host()) << b;
  // Each resumes on the other, under this rank's placement.
  Model cpu_reader(n);
  Model gpu_reader(n, testing::tiny_vit(), &stand_in, std::make_unique<CudaBackend>(choose_device()));
  load_checkpoint(dir.path + "/gpu.h5", cpu_reader.store, cpu_reader.opt.get(), {});
  load_checkpoint(dir.path + "/cpu.h5", gpu_reader.store, gpu_reader.opt.get(), {});
  EXPECT_EQ(cpu_reader.store.values().to_host(), gpu.store.values().to_host());
  EXPECT_EQ(gpu_reader.store.values().to_host(), cpu.store.values().to_host());
  for (int b = 0; b < 2; ++b) {
    EXPECT_EQ(cpu_reader.opt->state()[b].to_host(), gpu.opt->state()[b].to_host()) << b;
    EXPECT_EQ(gpu_reader.opt->state()[b].to_host(), cpu.opt->state()[b].to_host()) << b;
  }
}
#endif

// Every byte that is read back is checked: a single flipped byte anywhere in
// a checkpoint either makes reading it fail, or (in bytes nothing reads: free
// space, padding) changes nothing that is read. Byte by byte over the file's
// start (superblock, object headers, attributes) and 2,000 random positions
// beyond.
TEST(Checkpoint, NoFlippedByteIsAcceptedSilently) {
  if (world().size() != 1) GTEST_SKIP() << "one rank suffices";
  SharedDir dir;
  const std::string path = dir.path + "/c.h5";
  Model m(1);
  fill_known(m, 0.5f);
  CheckpointState s;
  s.step = 9;
  s.model_flags = "hidden_size=8\n";
  s.flagfile = "--hidden_size=8\n--seed=1\n";
  write_checkpoint(path, m.store, m.opt.get(), s, *m.groups);
  std::vector<char> original;
  {
    std::ifstream in(path, std::ios::binary);
    original.assign(std::istreambuf_iterator<char>(in), {});
  }
  Model reader(1);
  const std::vector<float> values = m.store.values().to_host();
  const std::vector<float> moment = m.opt->state()[1].to_host();
  // The sweep means something only if the undamaged file reads back whole.
  {
    const CheckpointState got = read_checkpoint_state(path);
    ASSERT_EQ(got.flagfile, s.flagfile);
    ASSERT_EQ(got.model_flags, s.model_flags);
    load_checkpoint(path, reader.store, reader.opt.get(), {});
    ASSERT_EQ(reader.store.values().to_host(), values);
  }
  const std::string flipped = dir.path + "/flipped.h5";
  std::vector<size_t> positions;
  for (size_t i = 0; i < std::min<size_t>(original.size(), 8192); ++i) positions.push_back(i);
  RandomStream rng(17, Stream::kTest);
  for (int i = 0; i < 2000 && original.size() > 8192; ++i)
    positions.push_back(8192 + rng.below(original.size() - 8192));
  int detected = 0, harmless = 0;
  // A reader that hangs on a damaged file fails the test at once, naming the byte.
  static size_t current = 0;
  std::signal(SIGALRM, [](int) {
    std::fprintf(stderr, "reading the checkpoint with byte %zu flipped hangs\n", current);
    std::_Exit(3);
  });
  for (size_t at : positions) {
    current = at;
    alarm(20);
    std::vector<char> bytes = original;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x5a);
    {
      std::ofstream out(flipped, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    bool read = false;
    CheckpointState got;
    try {
      got = read_checkpoint_state(flipped);
      load_checkpoint(flipped, reader.store, reader.opt.get(), {});
      read = true;
    } catch (const std::exception&) {
      ++detected;
    }
    if (!read) continue;
    // Read without an error: then everything read must be what was written.
    ASSERT_EQ(got.step, 9) << "byte " << at;
    ASSERT_EQ(got.flagfile, s.flagfile) << "byte " << at;
    ASSERT_EQ(got.model_flags, s.model_flags) << "byte " << at;
    ASSERT_EQ(reader.store.values().to_host(), values) << "byte " << at;
    ASSERT_EQ(reader.opt->state()[1].to_host(), moment) << "byte " << at;
    ++harmless;
  }
  alarm(0);
  std::printf(
      "%zu flipped bytes of a %zu-byte checkpoint: %d detected, %d in bytes nothing reads\n",
      positions.size(), original.size(), detected, harmless);
  EXPECT_GT(detected, static_cast<int>(positions.size() / 2));
}

TEST(Checkpoint, PositionEmbeddingResize) {
  // A linear ramp over a 2x2 grid stays a ramp on 4x4 (bilinear, clamped edges).
  const std::vector<float> old = {9, 0, 1, 2, 3};  // class row, then [[0,1],[2,3]], dim 1
  const std::vector<float> r = resize_position_embedding(old, 5, 17, 1, true);
  ASSERT_EQ(r.size(), 17u);
  EXPECT_EQ(r[0], 9);
  EXPECT_FLOAT_EQ(r[1], 0.0f);       // corner
  EXPECT_FLOAT_EQ(r[16], 3.0f);      // opposite corner
  EXPECT_FLOAT_EQ(r[1 + 1], 0.25f);  // (0, 1): x at 0.25 of the way
  EXPECT_THAT(testing::error_of([] { resize_position_embedding({0, 0, 0}, 3, 5, 1, false); }),
              HasSubstr("not a square number"));
}

TEST(Checkpoint, DifferingFlags) {
  EXPECT_THAT(differing_flags("a=1\nb=2\n", "a=1\nb=3\nc=4\n"),
              ::testing::ElementsAre("--b: checkpoint 2, now 3", "--c: checkpoint (unset), now 4"));
  EXPECT_TRUE(differing_flags("a=1\n", "a=1\n").empty());
}

}  // namespace
}  // namespace vmoe
