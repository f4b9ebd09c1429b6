#include "datasets/image_folder_shards.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

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
constexpr int64_t kBlock = 256;  // files read and checked by the pool at a time

// A file's bytes; the error names it.
std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VMOE_CHECK(in.good(), path, ": cannot open the file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  VMOE_CHECK(!in.bad(), path, ": read error");
  return bytes;
}

std::vector<std::vector<std::string>> read_lines_of_tokens(const std::string& path,
                                                           const char* flag) {
  std::ifstream in(path);
  VMOE_CHECK(in.good(), flag, "=", path, ": cannot open the file");
  std::vector<std::vector<std::string>> lines;
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::vector<std::string> tokens;
    for (std::string w; words >> w;) tokens.push_back(w);
    if (!tokens.empty()) lines.push_back(std::move(tokens));
  }
  return lines;
}

// The label a --val_labels entry names: a class folder's name or a number.
int32_t label_of(const std::string& token, const std::vector<std::string>& classes,
                 const std::string& where) {
  const auto it = std::find(classes.begin(), classes.end(), token);
  if (it != classes.end()) return static_cast<int32_t>(it - classes.begin());
  char* end = nullptr;
  const long v = std::strtol(token.c_str(), &end, 10);
  VMOE_CHECK(*end == '\0' && !token.empty() && v >= 0 && v < static_cast<long>(classes.size()),
             where, ": '", token, "' is neither a class folder of train/ nor a label in [0, ",
             classes.size(), ")");
  return static_cast<int32_t>(v);
}

// A flat folder of images, each file's class from the labels file.
ClassFiles flat_split(const fs::path& dir, const std::vector<std::string>& classes,
                      const std::string& labels_file) {
  const std::vector<std::string> files = files_with_extensions(dir, kExtensions);
  VMOE_CHECK(!files.empty(), dir.string(), ": no ", kImageFiles);
  const auto lines = read_lines_of_tokens(labels_file, "--val_labels");
  ClassFiles out(classes.size());
  const bool one_per_file =
      std::all_of(lines.begin(), lines.end(), [](const auto& l) { return l.size() == 1; });
  if (one_per_file) {
    VMOE_CHECK(lines.size() == files.size(), "--val_labels=", labels_file, " has ", lines.size(),
               " labels but ", dir.string(), " has ", files.size(),
               " images (one label per "
               "image, in sorted-name order, or FILE CLASS lines)");
    for (size_t i = 0; i < files.size(); ++i)
      out[label_of(lines[i][0], classes, str_cat(labels_file, " line ", i + 1))].push_back(
          files[i]);
    return out;
  }
  std::map<std::string, int32_t> by_name;
  for (size_t i = 0; i < lines.size(); ++i) {
    VMOE_CHECK(lines[i].size() == 2, "--val_labels=", labels_file, " line ", i + 1,
               ": expected FILE CLASS (or one CLASS per line for every line)");
    by_name[lines[i][0]] = label_of(lines[i][1], classes, str_cat(labels_file, " line ", i + 1));
  }
  for (const std::string& file : files) {
    const fs::path p(file);
    auto it = by_name.find(p.filename().string());
    if (it == by_name.end()) it = by_name.find(p.stem().string());
    VMOE_CHECK(it != by_name.end(), file, ": not in --val_labels=", labels_file);
    out[it->second].push_back(file);
  }
  return out;
}

// Display names from --class_map for the folders it names.
std::vector<std::string> mapped_names(const std::vector<std::string>& folders,
                                      const std::string& map_file) {
  std::map<std::string, std::string> names;
  std::ifstream in(map_file);
  VMOE_CHECK(in.good(), "--class_map=", map_file, ": cannot open the file");
  for (std::string line; std::getline(in, line);) {
    const size_t space = line.find_first_of(" \t");
    if (line.empty() || space == std::string::npos) continue;
    const size_t name = line.find_first_not_of(" \t", space);
    std::string value = name == std::string::npos ? "" : line.substr(name);
    while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
    if (!value.empty()) names[line.substr(0, space)] = value;
  }
  std::vector<std::string> out;
  for (const std::string& f : folders) out.push_back(names.count(f) ? names[f] : f);
  return out;
}

struct ShardCounts {
  int64_t written = 0, skipped = 0;
};

ShardCounts write_shard(const std::string& path, const std::vector<LabeledFile>& files,
                        const DatasetSpec& spec, bool skip_bad, WorkerPool& pool,
                        std::vector<std::string>& skipped_files) {
  EncodedShardWriter shard(path, spec);
  std::vector<std::vector<uint8_t>> bytes(kBlock);
  std::vector<std::string> errors(kBlock);
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
    for (int64_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) {
        VMOE_CHECK(skip_bad, errors[i], " (--skip_bad skips such files)");
        skipped_files.push_back(errors[i]);
        ++counts.skipped;
        continue;
      }
      shard.add(bytes[i].data(), bytes[i].size(), files[begin + i].label);
    }
  }
  counts.written = shard.finish();
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
    const bool flat = !test_dir.empty() && !files_with_extensions(test_dir, kExtensions).empty();
    if (flat) {
      VMOE_CHECK(!o.val_labels.empty(), test_dir.string(),
                 " holds images, not class folders: "
                 "pass --val_labels=FILE (their classes)");
      test = flat_split(test_dir, result.class_names, o.val_labels);
    } else if (!test_dir.empty()) {
      VMOE_CHECK(o.val_labels.empty(), "--val_labels applies to a flat ", test_dir.string(),
                 " folder of images, but it holds class folders");
      check_same_classes(train_dir, result.class_names, test_dir,
                         class_folders(test_dir, kImageFiles));
      test = files_per_class(test_dir, result.class_names, kExtensions, kImageFiles);
    }
  } else {
    result.class_names = class_folders(dir, kImageFiles);
    train = files_per_class(dir, result.class_names, kExtensions, kImageFiles);
    if (o.test_fraction > 0) split_classes(train, test, o.test_fraction, o.split_seed);
  }

  VMOE_CHECK(o.val_labels.empty() || has_train,
             "--val_labels needs DIR/train/CLASS folders and "
             "a flat DIR/val (or DIR/test) folder");
  const std::vector<std::string> folders = result.class_names;
  if (!o.class_map.empty()) result.class_names = mapped_names(folders, o.class_map);
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
