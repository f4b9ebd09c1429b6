// vmoe_plan: parameters, FLOPs, per-rank memory and all-to-all traffic of a
// vmoe_train configuration on a cluster shape, without data or devices.
//
//   vmoe_plan --flagfile=launch/configs/vmoe_b16_every2.flags --ranks=32
//       --devices_per_node=8 --device_memory_gb=80 [--precision=bf16] [--json=plan.json]
//
// The model flags are vmoe_train's (train_config.cpp); the dataset's shape,
// which vmoe_train reads from its training file, comes from --image_size (224 if empty),
// --image_channels, --num_classes and --multi_label (JFT-300M by default).
#include <gflags/gflags.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/check.h"
#include "launch/flag_lists.h"
#include "launch/planner.h"
#include "launch/train_config.h"

DECLARE_string(image_size);  // vmoe_train's; empty here means 224
DEFINE_int32(image_channels, 3, "Image channels.");
DEFINE_int64(num_classes, 18291, "Classes of the head (JFT-300M: 18,291).");
DEFINE_bool(multi_label, true, "Multi-label (sigmoid) head, as JFT.");
DEFINE_int32(ranks, 1, "Ranks (devices) of the run, one rank per device.");
DEFINE_int32(devices_per_node, 8, "Devices per node (all-to-all traffic leaving the node).");
DEFINE_double(device_memory_gb, 80, "Memory of one device in GiB (an '80 GB' GPU: 80).");
DEFINE_double(headroom, 0.10, "Fraction of the device memory left to the framework, the "
              "allocator's fragmentation and the communication library.");
DEFINE_string(json, "", "Also write the plan as JSON to this path.");

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "plans a vmoe_train run: parameters, FLOPs, per-rank memory, all-to-all traffic.\n"
      "  vmoe_plan --flagfile=launch/configs/vmoe_b16_every2.flags --ranks=32 "
      "--devices_per_node=8 --device_memory_gb=80 [--precision=bf16] [--json=plan.json]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  try {
    VMOE_CHECK(argc == 1, "unexpected argument '", argc > 1 ? argv[1] : "", "'");
    // vmoe_train requires a training file; the plan's dataset is described by flags.
    if (gflags::GetCommandLineFlagInfoOrDie("train_data").current_value.empty())
      gflags::SetCommandLineOption("train_data", "(vmoe_plan)");
    const auto [height, width] = vmoe::parse_image_size(FLAGS_image_size.empty() ? "224" : FLAGS_image_size);
    vmoe::DatasetInfo info;
    info.path = "(vmoe_plan)";
    info.size = int64_t{1} << 40;
    info.height = height;
    info.width = width;
    info.channels = FLAGS_image_channels;
    info.num_classes = FLAGS_num_classes;
    info.multi_label = FLAGS_multi_label;
    VMOE_CHECK(FLAGS_ranks >= 1, "--ranks must be >= 1, got ", FLAGS_ranks);
    vmoe::validate_flags();
    const vmoe::TrainConfig config = vmoe::config_from_flags(info, vmoe::DatasetInfo{}, FLAGS_ranks);
    vmoe::ClusterShape cluster;
    cluster.ranks = FLAGS_ranks;
    cluster.devices_per_node = FLAGS_devices_per_node;
    cluster.device_memory_gib = FLAGS_device_memory_gb;
    cluster.expert_parallel = config.expert_parallel;
    // Each EP group on one node, as the README advises.
    cluster.exchange_in_place =
        config.backend == "cpu" && config.expert_exchange == vmoe::ExchangeMode::kAuto;
    cluster.headroom = FLAGS_headroom;
    VMOE_CHECK(FLAGS_device_memory_gb > 0, "--device_memory_gb must be positive");
    const vmoe::Plan plan = vmoe::plan_run(config.trainer, cluster);
    const std::string flagfile = gflags::GetCommandLineFlagInfoOrDie("flagfile").current_value;
    std::string title = flagfile.empty() ? std::string("(command-line flags)") : flagfile;
    title += ", ";
    title += std::to_string(height) + "x" + std::to_string(width) + " images, " +
             std::to_string(FLAGS_num_classes) + (FLAGS_multi_label ? " multi-label" : "") +
             " classes, batch " + std::to_string(config.trainer.global_batch);
    std::fputs(vmoe::format_plan(plan, title).c_str(), stdout);
    if (!FLAGS_json.empty()) {
      std::ofstream out(FLAGS_json);
      out << vmoe::plan_json(plan, title);
      VMOE_CHECK(out.good(), "--json: cannot write ", FLAGS_json);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmoe_plan: %s\n", e.what());
    return 1;
  }
  return 0;
}
