#include "datasets/image_folder_shards.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/check.h"
#include "datasets/class_folders.h"
#include "datasets/dataset_info.h"
#include "datasets/dataset_writer.h"
#include "datasets/encoded_shards.h"
#include "datasets/image_codec.h"
#include "datasets/importer.h"
#include "datasets/worker_pool.h"

namespace vmoe {
namespace fs = std::filesystem;
namespace {

constexpr char kImageFiles[] = ".jpg, .jpeg or .png files";
const std::vector<std::string> kExtensions = {".jpg", ".jpeg", ".png"};
constexpr int64_t kBlock = 256;  // files read and checked, then appended, at a time

// A file's bytes; the error names it.
std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VMOE_CHECK(in.good(), path, ": cannot open the file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  VMOE_CHECK(!in.bad(), path, ": read error");
  return bytes;
}

struct ShardCounts {
  int64_t written = 0, skipped = 0;
};

ShardCounts write_shard(const std::string& path, const std::vector<LabeledFile>& files,
                        const DatasetSpec& spec, bool skip_bad, WorkerPool& pool,
                        std::vector<std::string>& skipped_files) {
  DatasetWriter writer(path, spec);
  std::vector<std::vector<uint8_t>> bytes(kBlock);
  std::vector<std::string> errors(kBlock);
  std::vector<uint8_t> packed;
  std::vector<int64_t> offsets;
  std::vector<int32_t> labels;
  ShardCounts counts;
  const auto total = static_cast<int64_t>(files.size());
  for (int64_t begin = 0; begin < total; begin += kBlock) {
    const int64_t n = std::min(kBlock, total - begin);
    pool.parallel_for(n, [&](int64_t i) {
      const std::string& file = files[begin + i].path;
      errors[i].clear();
      try {
        bytes[i] = read_file(file);
        read_image_header(bytes[i].data(), bytes[i].size(), file);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
    packed.clear();
    labels.clear();
    offsets.assign(1, 0);
    for (int64_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) {
        VMOE_CHECK(skip_bad, errors[i], " (--skip_bad skips such files)");
        skipped_files.push_back(errors[i]);
        ++counts.skipped;
        continue;
      }
      packed.insert(packed.end(), bytes[i].begin(), bytes[i].end());
      offsets.push_back(static_cast<int64_t>(packed.size()));
      labels.push_back(files[begin + i].label);
    }
    const auto kept = static_cast<int64_t>(labels.size());
    if (kept > 0) {
      writer.append({.count = kept,
                     .images = packed.data(),
                     .image_offsets = offsets.data(),
                     .labels = labels.data()});
    }
    counts.written += kept;
  }
  writer.finish();
  return counts;
}

}  // namespace

ImageFolderResult import_image_folder(const ImageFolderImport& o) {
  VMOE_CHECK(o.images_per_shard > 0, "--images_per_shard must be positive, got ",
             o.images_per_shard);
  VMOE_CHECK(o.height > 0 && o.width > 0, "--image_size must be positive, got ", o.height, "x",
             o.width);
  VMOE_CHECK(o.channels == 1 || o.channels == 3, "--channels must be 1 or 3, got ", o.channels);
  VMOE_CHECK(o.test_fraction >= 0 && o.test_fraction < 1, "--test_fraction must be in [0, 1), got ",
             o.test_fraction);
  VMOE_CHECK(o.world >= 1 && o.rank >= 0 && o.rank < o.world && o.threads >= 1,
             "bad rank/world/threads");
  import_detail::check_input_dir(o.input_dir);
  const fs::path dir(o.input_dir), train_dir = dir / "train";
  std::error_code ec;
  fs::path test_dir;
  for (const char* name : {"val", "test"}) {
    if (fs::is_directory(dir / name, ec)) test_dir = dir / name;
  }
  const bool has_train = fs::is_directory(train_dir, ec);
  VMOE_CHECK(has_train || test_dir.empty(), o.input_dir, ": has ", test_dir.filename().string(),
             "/ but no train/ folder; expected train/CLASS/ (and val/CLASS/ or test/CLASS/), "
             "or CLASS/ folders directly");

  ImageFolderResult result;
  ClassFiles train, test;
  if (has_train) {
    VMOE_CHECK(o.test_fraction == 0.0, o.input_dir, ": has a train/ folder, so --test_fraction ",
               "does not apply (it splits a folder of class folders)");
    result.class_names = class_folders(train_dir, kImageFiles);
    train = files_per_class(train_dir, result.class_names, kExtensions, kImageFiles);
    if (!test_dir.empty()) {
      check_same_classes(train_dir, result.class_names, test_dir,
                         class_folders(test_dir, kImageFiles));
      test = files_per_class(test_dir, result.class_names, kExtensions, kImageFiles);
    }
  } else {
    result.class_names = class_folders(dir, kImageFiles);
    train = files_per_class(dir, result.class_names, kExtensions, kImageFiles);
    if (o.test_fraction > 0) split_classes(train, test, o.test_fraction, o.split_seed);
  }

  DatasetSpec spec{.height = o.height,
                   .width = o.width,
                   .channels = o.channels,
                   .encoded = true,
                   .num_classes = static_cast<int64_t>(result.class_names.size()),
                   .class_names = result.class_names};
  fs::create_directories(o.output_dir, ec);
  VMOE_CHECK(!ec, o.output_dir, ": cannot create the folder: ", ec.message());

  struct Planned {
    std::string path;
    std::vector<LabeledFile> files;
  };
  std::vector<Planned> mine;  // this rank's shards, in order
  for (const auto& [name, classes] : {std::pair{"train", &train}, std::pair{"test", &test}}) {
    const std::vector<LabeledFile> files = interleave(*classes);
    if (files.empty()) continue;
    const auto n = static_cast<int64_t>(files.size());
    const int64_t shards = (n + o.images_per_shard - 1) / o.images_per_shard;
    result.splits.push_back(
        {name, n, shards, (fs::path(o.output_dir) / (std::string(name) + "-*.h5")).string()});
    for (int64_t s = o.rank; s < shards; s += o.world) {
      const int64_t first = s * n / shards, last = (s + 1) * n / shards;
      mine.push_back({encoded_shard_path(o.output_dir, name, s, shards),
                      std::vector<LabeledFile>(files.begin() + first, files.begin() + last)});
    }
  }
  int64_t total = 0, done = 0;
  for (const Planned& p : mine) total += static_cast<int64_t>(p.files.size());
  WorkerPool pool(o.threads);
  for (const Planned& p : mine) {
    const auto planned = static_cast<int64_t>(p.files.size());
    int64_t images = 0;
    if (encoded_shard_complete(p.path, planned, spec)) {
      images = inspect_dataset(p.path).size;
      result.kept += images;
    } else {
      const ShardCounts c =
          write_shard(p.path, p.files, spec, o.skip_bad, pool, result.skipped_files);
      images = c.written;
      result.written += c.written;
      result.skipped += c.skipped;
    }
    done += planned;
    if (o.progress) o.progress(p.path, images, done, total);
  }
  return result;
}

}  // namespace vmoe
