#include "checkpoints/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "checkpoints/disk_space.h"
#include "checkpoints/position_embedding.h"
#include "comm/agreement.h"
#include "comm/mpi_communicator.h"
#include "core/check.h"
#include "core/h5.h"

namespace vmoe {
namespace {

constexpr int64_t kMaxChunkBytes = int64_t{64} << 20;

// The optimiser state buffers' dataset groups, in Optimizer::state() order.
std::vector<std::string> state_groups(const Optimizer& o) {
  if (o.config().kind == OptimizerKind::kAdam) return {"optimizer/adam_m/", "optimizer/adam_v/"};
  return {"optimizer/sgd_momentum/"};
}

Shape global_shape(const ParamSpec& s) {
  Shape g = s.shape;
  if (s.global_rows > 0) g[0] = s.global_rows;
  return g;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

// Rows [first, first + count) of a dataset, into host memory.
std::vector<float> read_rows(const h5::Dataset& ds, int64_t first, int64_t count,
                             int64_t row_elems) {
  std::vector<float> out(static_cast<size_t>(count * row_elems));
  ds.read_rows(first, count, out.data());
  return out;
}

}  // namespace

int64_t planned_checkpoint_bytes(const ParamStore& store, const Optimizer* optimizer) {
  const int64_t copies =
      1 + (optimizer != nullptr ? static_cast<int64_t>(state_groups(*optimizer).size()) : 0);
  int64_t floats = 0;
  for (ParamId id = 0; id < store.count(); ++id)
    floats += num_elements(global_shape(store.spec(id)));
  // Object headers and chunk indexes: ~500 bytes a dataset measured; 2 KB
  // leaves room. Plus the attributes (the flagfile) and the superblock.
  return copies * (floats * 4 + store.count() * 2048) + (int64_t{64} << 10);
}

namespace {

// The attributes a checkpoint carries, in one canonical byte string for the
// checksum: name, a zero byte, the value as written, a zero byte, in order.
std::string attribute_bytes(const CheckpointState& s, int64_t version) {
  std::string out;
  auto add = [&](const char* name, const std::string& value) {
    out += name;
    out += '\0';
    out += value;
    out += '\0';
  };
  add("format_version", std::to_string(version));
  add("step", std::to_string(s.step));
  add("seed", std::to_string(static_cast<int64_t>(s.seed)));
  add("global_batch", std::to_string(s.global_batch));
  add("world", std::to_string(s.world));
  add("expert_parallel", std::to_string(s.expert_parallel));
  add("model_flags", s.model_flags);
  add("optimizer_flags", s.optimizer_flags);
  add("flagfile", s.flagfile);
  return out;
}

int64_t attribute_checksum(const CheckpointState& s, int64_t version) {
  const std::string bytes = attribute_bytes(s, version);
  return static_cast<int64_t>(crc32(crc32(0L, Z_NULL, 0),
                                    reinterpret_cast<const Bytef*>(bytes.data()),
                                    static_cast<uInt>(bytes.size())));
}

// One collective step of a write, then every rank's outcome agreed: a
// failure anywhere throws on every rank at the same point.
class AgreedSteps {
 public:
  // `path`: the file as the user knows it (without a temporary suffix).
  AgreedSteps(MpiCommunicator& host, std::string path, int64_t needed)
      : host_(host), path_(std::move(path)), needed_(needed) {}
  template <typename Step>
  void run(const char* what, Step&& step) {
    std::string error;
    try {
      step();
    } catch (const std::exception& e) {
      error = e.what()[0] != '\0' ? e.what() : "unknown error";
    }
    // Everyone reports the first failing rank's error.
    const FirstError first = first_error(host_, error);
    if (first.message.empty()) return;
    std::string cause = first.message;
    if (host_.size() > 1) cause += " (rank " + std::to_string(first.rank) + ")";
    // The disk is the usual cause; say so when it is nearly full.
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    const int64_t free = free_bytes(dir);
    if (free >= 0 && free < needed_ / 8 && cause.find("No space left") == std::string::npos)
      cause = str_cat("No space left on device: ", dir, " has ", mib(free),
                      " free, the checkpoint needs about ", mib(needed_), " (", cause, ")");
    throw CheckpointWriteError(
        str_cat("cannot write checkpoint ", path_, " (", what, "): ", cause));
  }

 private:
  MpiCommunicator& host_;
  std::string path_;
  int64_t needed_;
};

}  // namespace

void write_checkpoint(const std::string& path, ParamStore& store, Optimizer* optimizer,
                      const CheckpointState& state, ProcessGroups& groups, int abort_after) {
  MpiCommunicator& host = groups.host();
  const int64_t needed = planned_checkpoint_bytes(store, optimizer);
  const std::string shown = path.ends_with(".tmp") ? path.substr(0, path.size() - 4) : path;
  AgreedSteps steps(host, shown, needed);
  const char* fail_hook = std::getenv("VMOE_TEST_FAIL_CHECKPOINT_DATASET");
  const int fail_at =
      fail_hook != nullptr && host.rank() == host.size() - 1 ? std::atoi(fail_hook) : -1;
  // Rank 0 creates the file with its attributes and reserves the space the
  // whole checkpoint needs: a full disk shows there, on one rank, before any
  // collective write (where a rank failing alone could leave the others
  // waiting in HDF5's own collectives).
  steps.run("create", [&] {
    if (host.rank() != 0) return;
    h5::File created = h5::File::create(path, /*checksummed_metadata=*/true);
    created.write_int64_attribute("format_version", kCheckpointFormatVersion);
    created.write_int64_attribute("step", state.step);
    created.write_int64_attribute("seed", static_cast<int64_t>(state.seed));
    created.write_int64_attribute("global_batch", state.global_batch);
    created.write_int64_attribute("world", state.world);
    created.write_int64_attribute("expert_parallel", state.expert_parallel);
    // Fixed-length strings: in checksummed object headers, not the global heap.
    created.write_string_attribute("model_flags", state.model_flags);
    created.write_string_attribute("optimizer_flags", state.optimizer_flags);
    created.write_string_attribute("flagfile", state.flagfile);
    created.write_int64_attribute("attributes_crc32",
                                  attribute_checksum(state, kCheckpointFormatVersion));
    created.close();
    reserve_space(path, needed);
  });
  // MPI-IO on the host communicator: on GPUs the world is NCCL.
  h5::File file;
  steps.run("open", [&] { file = h5::File::open_parallel(path, host.handle()); });

  // Dense tensors are written by world rank 0, each expert slice by the first
  // of the ranks that hold it: every element exactly once.
  const bool dense_writer = host.rank() == 0;
  const bool expert_writer = groups.expert_replicas().rank() == 0;
  Backend& be = store.values().backend();
  std::vector<float> host_rows;
  int written = 0;
  auto write = [&](const std::string& name, ParamId id, const float* device) {
    const ParamSpec& spec = store.spec(id);
    const Shape shape = global_shape(spec);
    const int64_t row = num_elements(shape) / shape[0];
    Shape chunk = shape;
    if (spec.region == Region::kExpert) {
      chunk[0] = 1;  // one expert per chunk: each is written whole by one rank
    } else {
      chunk[0] = std::clamp<int64_t>(kMaxChunkBytes / (row * 4), 1, shape[0]);
    }
    const bool mine = spec.region == Region::kExpert ? expert_writer : dense_writer;
    const int64_t first = spec.region == Region::kExpert ? spec.global_offset : 0;
    const int64_t count = mine ? spec.shape[0] : 0;
    host_rows.resize(static_cast<size_t>(count * row));
    if (count > 0) be.copy_to_host(host_rows.data(), device, host_rows.size() * sizeof(float));
    steps.run(name.c_str(), [&] {
      h5::Dataset ds = file.create_dataset<float>(
          name,
          {.shape = shape, .growable = false, .chunk = chunk, .checksum = true, .fill = false});
      ds.write_rows_collective(first, count, host_rows.data());
      // Test hook: this rank's part of the collective write "failed" (as a
      // full disk makes MPI-IO return an error on some ranks).
      VMOE_CHECK(written != fail_at, "test failure of dataset ", written);
    });
    if (++written == abort_after) std::abort();  // test hook: a crash mid-write
  };
  for (ParamId id = 0; id < store.count(); ++id)
    write("params/" + store.spec(id).name, id, store.value(id));
  if (optimizer != nullptr) {
    const std::vector<std::string> names = state_groups(*optimizer);
    for (size_t b = 0; b < names.size(); ++b)
      for (ParamId id = 0; id < store.count(); ++id)
        write(names[b] + store.spec(id).name, id,
              optimizer->state()[b].data() + store.offset(id));
  }
  steps.run("close", [&] { file.close(); });
}

CheckpointState read_checkpoint_state(const std::string& path) {
  h5::File file = h5::File::open_read(path);
  CheckpointState s;
  const int64_t version = file.read_int64_attribute("format_version");
  VMOE_CHECK(version <= kCheckpointFormatVersion, path, ": checkpoint format version ", version,
             " is newer than this program's (", kCheckpointFormatVersion, ")");
  s.step = file.read_int64_attribute("step");
  s.seed = static_cast<uint64_t>(file.read_int64_attribute("seed"));
  s.global_batch = file.read_int64_attribute("global_batch");
  s.world = file.read_int64_attribute("world");
  s.expert_parallel = file.read_int64_attribute("expert_parallel");
  s.model_flags = file.read_strings_attribute("model_flags").at(0);
  s.optimizer_flags = file.read_strings_attribute("optimizer_flags").at(0);
  s.flagfile = file.read_strings_attribute("flagfile").at(0);
  // Version 1 files have no checksum: their attributes are taken as they are.
  // (A damaged version number shows too: it is part of the checksum.)
  const bool has_checksum = file.has_attribute("attributes_crc32");
  VMOE_CHECK(version >= 1 && (has_checksum || version == 1), path,
             ": the checkpoint's attributes are damaged (format version ", version,
             has_checksum ? "" : " without its checksum", ")");
  if (has_checksum) {
    VMOE_CHECK(file.read_int64_attribute("attributes_crc32") == attribute_checksum(s, version),
               path,
               ": the checkpoint's attributes do not match their checksum (the file is "
               "damaged)");
  }
  return s;
}

LoadReport load_checkpoint(const std::string& path, ParamStore& store, Optimizer* optimizer,
                           const LoadRules& rules) {
  h5::File file = h5::File::open_read(path);
  Backend& be = store.values().backend();
  LoadReport report;
  // Reads this rank's rows of `name` into `device` (shape per `id`); false if
  // the fine-tuning rules keep the fresh value instead.
  auto load = [&](const std::string& name, ParamId id, float* device) {
    const ParamSpec& spec = store.spec(id);
    VMOE_CHECK(file.has_dataset(name), path, ": missing dataset /", name,
               " (was the checkpoint written for another model or optimiser?)");
    const h5::Dataset ds = file.dataset(name);
    const Shape want = global_shape(spec), have = ds.shape();
    if (have != want) {
      if (rules.fine_tune && (spec.name == "head/kernel" || spec.name == "head/bias")) {
        report.reinitialised.push_back(spec.name);
        return;
      }
      if (rules.fine_tune && spec.name == "pos_embedding" && have.size() == 2 &&
          have[1] == want[1]) {
        const std::vector<float> old = read_rows(ds, 0, have[0], have[1]);
        const std::vector<float> resized =
            resize_position_embedding(old, have[0], want[0], want[1], store.find("cls").has_value());
        be.copy_to_device(device, resized.data(), resized.size() * sizeof(float));
        report.resized.push_back(spec.name);
        return;
      }
      fail(path, ": /", name, " has shape ", shape_str(have), " but the model expects ",
           shape_str(want));
    }
    const int64_t first = spec.region == Region::kExpert ? spec.global_offset : 0;
    const std::vector<float> rows =
        read_rows(ds, first, spec.shape[0], num_elements(want) / want[0]);
    be.copy_to_device(device, rows.data(), rows.size() * sizeof(float));
  };
  for (ParamId id = 0; id < store.count(); ++id) {
    const std::string& name = store.spec(id).name;
    const bool skip = std::any_of(rules.skip.begin(), rules.skip.end(),
                                  [&](const std::regex& r) { return std::regex_search(name, r); });
    if (skip) {
      report.skipped.push_back(name);
      continue;
    }
    load("params/" + name, id, store.value(id));
    report.loaded.push_back(name);
  }
  store.refresh_bf16();
  if (rules.optimizer && optimizer != nullptr) {
    const std::vector<std::string> names = state_groups(*optimizer);
    for (size_t b = 0; b < names.size(); ++b)
      for (ParamId id = 0; id < store.count(); ++id)
        load(names[b] + store.spec(id).name, id, optimizer->state()[b].data() + store.offset(id));
  }
  return report;
}

std::vector<std::string> differing_flags(const std::string& saved, const std::string& now) {
  auto parse = [](const std::string& text) {
    std::vector<std::pair<std::string, std::string>> out;
    std::stringstream in(text);
    for (std::string line; std::getline(in, line);) {
      const size_t eq = line.find('=');
      if (eq != std::string::npos) out.emplace_back(line.substr(0, eq), line.substr(eq + 1));
    }
    return out;
  };
  const auto a = parse(saved), b = parse(now);
  std::vector<std::string> diff;
  for (const auto& [name, value] : a) {
    const auto it = std::find_if(b.begin(), b.end(), [&](const auto& p) { return p.first == name; });
    const std::string current = it == b.end() ? "(unset)" : it->second;
    if (current != value) diff.push_back("--" + name + ": checkpoint " + value + ", now " + current);
  }
  for (const auto& [name, value] : b) {
    const bool known =
        std::any_of(a.begin(), a.end(), [&](const auto& p) { return p.first == name; });
    if (!known) diff.push_back("--" + name + ": checkpoint (unset), now " + value);
  }
  return diff;
}

}  // namespace vmoe
