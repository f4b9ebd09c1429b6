#include "datasets/dataset_info.h"

#include <algorithm>
#include <climits>
#include <vector>

#include <glob.h>

#include "core/check.h"
#include "core/h5.h"
#include "core/h5_vlen.h"
#include "datasets/schema.h"

namespace vmoe {
namespace {

// Labels are checked this many values at a time, bounding memory for any N.
constexpr int64_t kValidateBlockValues = int64_t{1} << 20;

std::string format_shape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

void expect_dtype(const h5::Dataset& dataset, const h5::Dtype& expected) {
  const h5::Dtype found = dataset.dtype();
  VMOE_CHECK(found == expected, dataset.where(), ": expected ", expected.name(), ", found ",
             found.name());
}

std::vector<int64_t> expect_rank(const h5::Dataset& dataset, size_t rank, const char* layout) {
  const std::vector<int64_t> shape = dataset.shape();
  VMOE_CHECK(shape.size() == rank, dataset.where(), ": expected rank ", rank, " ", layout,
             ", found rank ", shape.size(), " ", format_shape(shape));
  return shape;
}

// Streams an int32 [N] dataset and checks lo <= value < hi (hi < 0: no upper bound).
void validate_int32(const h5::Dataset& dataset, int64_t n, int32_t lo, int64_t hi,
                    const char* what) {
  std::vector<int32_t> block(std::min(n, kValidateBlockValues));
  for (int64_t first = 0; first < n; first += kValidateBlockValues) {
    const int64_t count = std::min(kValidateBlockValues, n - first);
    dataset.read_rows(first, count, block.data());
    for (int64_t i = 0; i < count; ++i) {
      const int32_t v = block[i];
      if (v < lo || (hi >= 0 && v >= hi)) {
        const std::string allowed = hi >= 0 ? str_cat("[", lo, ", ", hi, ")") : str_cat(">= ", lo);
        fail(dataset.where(), ": example ", first + i, " has ", what, " ", v, ", expected ",
             allowed);
      }
    }
  }
}

// Streams a uint8 multi-hot [N, K] dataset and checks every value is 0 or 1.
void validate_multi_hot(const h5::Dataset& dataset, int64_t n, int64_t k) {
  const int64_t rows_per_block = std::max<int64_t>(1, kValidateBlockValues / k);
  std::vector<uint8_t> block(std::min(n, rows_per_block) * k);
  for (int64_t first = 0; first < n; first += rows_per_block) {
    const int64_t count = std::min(rows_per_block, n - first);
    dataset.read_rows(first, count, block.data());
    for (int64_t i = 0; i < count * k; ++i) {
      if (block[i] > 1) {
        fail(dataset.where(), ": example ", first + i / k, " has value ", int{block[i]},
             " for class ", i % k, ", expected 0 or 1 (multi-hot)");
      }
    }
  }
}

// Streams a vlen int32 [N] dataset of class ids and checks 0 <= id < k.
void validate_sparse_labels(const h5::Dataset& dataset, int64_t n, int64_t k) {
  std::vector<int64_t> rows;
  std::vector<int32_t> ids;
  std::vector<int64_t> offsets;
  const int64_t block = kValidateBlockValues / 16;  // rows; ids per row are few
  for (int64_t first = 0; first < n; first += block) {
    const int64_t count = std::min(block, n - first);
    rows.resize(count);
    for (int64_t i = 0; i < count; ++i) rows[i] = first + i;
    h5::read_vlen_rows(dataset, rows, ids, offsets);
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t j = offsets[i]; j < offsets[i + 1]; ++j) {
        if (ids[j] < 0 || ids[j] >= k) {
          fail(dataset.where(), ": example ", first + i, " has class id ", ids[j],
               ", expected [0, ", k, ")");
        }
      }
    }
  }
}

// The optional /superclass, checked against the shard's size.
DatasetInfo with_superclass(const h5::File& file, DatasetInfo info) {
  info.has_superclass = file.has_dataset(schema::kSuperclass);
  if (info.has_superclass) {
    const h5::Dataset superclass = file.dataset(schema::kSuperclass);
    expect_dtype(superclass, h5::Dtype{h5::TypeClass::kInteger, 4, true});
    const std::vector<int64_t> s = expect_rank(superclass, 1, "[N]");
    VMOE_CHECK(s[0] == info.size, superclass.where(), ": has ", s[0], " rows but ", schema::kImages,
               " has ", info.size);
    validate_int32(superclass, info.size, 0, -1, "superclass");
  }
  return info;
}

// Shards of one dataset must be interchangeable apart from their examples.
void check_same_schema(const DatasetInfo& first, const DatasetInfo& shard) {
  const auto describe = [](const DatasetInfo& d) {
    return str_cat(d.encoded ? "encoded " : "raw ", d.height, "x", d.width, "x", d.channels,
                   " images, ", d.num_classes, d.sparse_labels ? " sparse" : "",
                   d.multi_label ? " multi-label" : "", " classes",
                   d.has_superclass ? ", superclasses" : "");
  };
  VMOE_CHECK(describe(first) == describe(shard) && first.class_names == shard.class_names,
             "shard ", shard.path, " does not match shard ", first.shards[0], ": it has ",
             describe(shard), " against ", describe(first),
             first.class_names == shard.class_names ? "" : " (or different class names)");
}

int read_image_attribute(const h5::File& file, const char* name) {
  VMOE_CHECK(file.has_attribute(name), file.path(), ": encoded images need attribute ", name,
             " (the size the loader produces)");
  const int64_t v = file.read_int64_attribute(name);
  VMOE_CHECK(v > 0 && v <= 65535, file.path(), ": attribute ", name, " must be in [1, 65535], found ",
             v);
  return static_cast<int>(v);
}

// One file against the schema.
DatasetInfo inspect_shard(const std::string& path) {
  const h5::File file = h5::File::open_read(path);
  const h5::Dtype uint8{h5::TypeClass::kInteger, 1, false};
  const h5::Dtype int32{h5::TypeClass::kInteger, 4, true};
  DatasetInfo info;
  info.path = path;

  const h5::Dataset images = file.dataset(schema::kImages);
  info.encoded = h5::is_vlen_of(images, uint8);
  if (info.encoded) {
    info.size = expect_rank(images, 1, "vlen uint8 [N] (encoded images)")[0];
    info.height = read_image_attribute(file, schema::kImageHeight);
    info.width = read_image_attribute(file, schema::kImageWidth);
    info.channels = read_image_attribute(file, schema::kImageChannels);
    VMOE_CHECK(info.channels == 1 || info.channels == 3, path, ": attribute ",
               schema::kImageChannels, " must be 1 or 3, found ", info.channels);
  } else {
    expect_dtype(images, uint8);
    const std::vector<int64_t> shape = expect_rank(images, 4, "[N, H, W, C]");
    for (int d = 1; d < 4; ++d) {
      VMOE_CHECK(shape[d] > 0 && shape[d] <= INT_MAX, images.where(),
                 ": image dimensions must be positive, found shape ", format_shape(shape));
    }
    info.size = shape[0];
    info.height = static_cast<int>(shape[1]);
    info.width = static_cast<int>(shape[2]);
    info.channels = static_cast<int>(shape[3]);
  }
  VMOE_CHECK(info.size > 0, images.where(), ": holds no examples");

  VMOE_CHECK(file.has_attribute(schema::kNumClasses), path, ": missing attribute ",
             schema::kNumClasses);
  info.num_classes = file.read_int64_attribute(schema::kNumClasses);
  VMOE_CHECK(info.num_classes > 0 && info.num_classes <= INT32_MAX, path, ": attribute ",
             schema::kNumClasses, " must be in [1, 2^31), found ", info.num_classes);
  VMOE_CHECK(file.has_attribute(schema::kClassNames), path, ": missing attribute ",
             schema::kClassNames);
  info.class_names = file.read_strings_attribute(schema::kClassNames);
  VMOE_CHECK(static_cast<int64_t>(info.class_names.size()) == info.num_classes, path,
             ": attribute ", schema::kClassNames, " has ", info.class_names.size(),
             " names but num_classes is ", info.num_classes);

  const h5::Dataset labels = file.dataset(schema::kLabels);
  if (h5::is_vlen_of(labels, int32)) {
    const int64_t rows = expect_rank(labels, 1, "vlen int32 [N] (class ids)")[0];
    VMOE_CHECK(rows == info.size, labels.where(), ": has ", rows, " rows but ", schema::kImages,
               " has ", info.size);
    info.multi_label = info.sparse_labels = true;
    validate_sparse_labels(labels, info.size, info.num_classes);
    return with_superclass(file, std::move(info));
  }
  const std::vector<int64_t> label_shape = labels.shape();
  VMOE_CHECK(label_shape.size() == 1 || label_shape.size() == 2, labels.where(),
             ": expected rank 1 (int32 [N]) or rank 2 (uint8 multi-hot [N, K]), found rank ",
             label_shape.size(), " ", format_shape(label_shape));
  info.multi_label = label_shape.size() == 2;
  expect_dtype(labels, info.multi_label ? uint8 : int32);
  VMOE_CHECK(label_shape[0] == info.size, labels.where(), ": has ", label_shape[0], " rows but ",
             schema::kImages, " has ", info.size);
  if (info.multi_label) {
    VMOE_CHECK(label_shape[1] == info.num_classes, labels.where(), ": multi-hot width is ",
               label_shape[1], " but num_classes is ", info.num_classes);
    validate_multi_hot(labels, info.size, info.num_classes);
  } else {
    validate_int32(labels, info.size, 0, info.num_classes, "label");
  }
  return with_superclass(file, std::move(info));
}

}  // namespace

int DatasetInfo::shard_of(int64_t index) const {
  const auto it = std::upper_bound(shard_offsets.begin(), shard_offsets.end(), index);
  return static_cast<int>(it - shard_offsets.begin()) - 1;
}

std::vector<std::string> expand_dataset_files(const std::string& spec) {
  std::vector<std::string> files;
  size_t begin = 0;
  while (begin <= spec.size()) {
    const size_t end = std::min(spec.find(',', begin), spec.size());
    const std::string item = spec.substr(begin, end - begin);
    begin = end + 1;
    VMOE_CHECK(!item.empty(), "dataset '", spec, "': empty file name in the list");
    if (item.find_first_of("*?[") == std::string::npos) {
      files.push_back(item);
      continue;
    }
    glob_t matches{};
    const int status = glob(item.c_str(), 0, nullptr, &matches);  // sorted by glob
    for (size_t i = 0; status == 0 && i < matches.gl_pathc; ++i) {
      files.emplace_back(matches.gl_pathv[i]);
    }
    globfree(&matches);
    VMOE_CHECK(status == 0, "dataset '", spec, "': no file matches ", item);
  }
  return files;
}

DatasetInfo inspect_dataset(const std::string& spec) {
  const std::vector<std::string> files = expand_dataset_files(spec);
  DatasetInfo info;
  for (const std::string& file : files) {
    DatasetInfo shard = inspect_shard(file);
    if (info.shards.empty()) {
      info = std::move(shard);
      info.shards.clear();
      info.shard_offsets.assign(1, 0);
    } else {
      check_same_schema(info, shard);
      info.size += shard.size;
    }
    info.shards.push_back(file);
    info.shard_offsets.push_back(info.size);
  }
  info.path = spec;
  return info;
}

std::vector<int32_t> read_all_labels(const DatasetInfo& info) {
  VMOE_CHECK(!info.multi_label, info.path, ": expected single-label data");
  std::vector<int32_t> labels(info.size);
  for (size_t s = 0; s < info.shards.size(); ++s) {
    const int64_t first = info.shard_offsets[s], count = info.shard_offsets[s + 1] - first;
    h5::File::open_read(info.shards[s])
        .dataset(schema::kLabels)
        .read_rows<int32_t>(0, count, labels.data() + first);
  }
  return labels;
}

}  // namespace vmoe
