#include "datasets/dataset_info.h"

#include <algorithm>
#include <climits>
#include <vector>

#include "core/check.h"
#include "core/h5.h"
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

}  // namespace

DatasetInfo inspect_dataset(const std::string& path) {
  const h5::File file = h5::File::open_read(path);
  const h5::Dtype uint8{h5::TypeClass::kInteger, 1, false};
  const h5::Dtype int32{h5::TypeClass::kInteger, 4, true};
  DatasetInfo info;
  info.path = path;

  const h5::Dataset images = file.dataset(schema::kImages);
  expect_dtype(images, uint8);
  const std::vector<int64_t> shape = expect_rank(images, 4, "[N, H, W, C]");
  for (int d = 1; d < 4; ++d) {
    VMOE_CHECK(shape[d] > 0 && shape[d] <= INT_MAX, images.where(),
               ": image dimensions must be "
               "positive, found shape ",
               format_shape(shape));
  }
  info.size = shape[0];
  VMOE_CHECK(info.size > 0, images.where(), ": holds no examples (shape ", format_shape(shape),
             ")");
  info.height = static_cast<int>(shape[1]);
  info.width = static_cast<int>(shape[2]);
  info.channels = static_cast<int>(shape[3]);

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

  info.has_superclass = file.has_dataset(schema::kSuperclass);
  if (info.has_superclass) {
    const h5::Dataset superclass = file.dataset(schema::kSuperclass);
    expect_dtype(superclass, int32);
    const std::vector<int64_t> s = expect_rank(superclass, 1, "[N]");
    VMOE_CHECK(s[0] == info.size, superclass.where(), ": has ", s[0], " rows but ", schema::kImages,
               " has ", info.size);
    validate_int32(superclass, info.size, 0, -1, "superclass");
  }
  return info;
}

}  // namespace vmoe
