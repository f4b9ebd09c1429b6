#include "datasets/copy_examples.h"

#include <algorithm>

#include "core/check.h"
#include "core/h5.h"
#include "datasets/dataset_info.h"
#include "datasets/dataset_writer.h"
#include "datasets/schema.h"

namespace vmoe {

int64_t copy_examples(const std::string& src, const std::string& dst, const CopyOptions& o) {
  const DatasetInfo info = inspect_dataset(src);
  const int64_t count = o.count < 0 ? info.size - o.first : o.count;
  VMOE_CHECK(o.first >= 0 && count >= 0 && o.first + count <= info.size, "cannot copy examples [",
             o.first, ", ", o.first + count, ") of ", src, ": it holds ", info.size);
  const std::vector<int32_t>* map = o.class_to_superclass;
  if (map != nullptr) {
    VMOE_CHECK(!info.multi_label, src, ": super-classes come from single labels, but ",
               "the file is multi-label");
    VMOE_CHECK(static_cast<int64_t>(map->size()) == info.num_classes, "the super-class map has ",
               map->size(), " classes but ", src, " has ", info.num_classes);
  }
  DatasetSpec spec;
  spec.height = info.height;
  spec.width = info.width;
  spec.channels = info.channels;
  spec.num_classes = info.num_classes;
  spec.multi_label = info.multi_label;
  spec.has_superclass = map != nullptr || info.has_superclass;
  spec.class_names = info.class_names;

  h5::File in = h5::File::open_read(src);
  const h5::Dataset images = in.dataset(schema::kImages);
  const h5::Dataset labels = in.dataset(schema::kLabels);
  h5::Dataset superclass;
  if (info.has_superclass && map == nullptr) superclass = in.dataset(schema::kSuperclass);

  DatasetWriter writer(dst, spec);
  const int64_t image_bytes = int64_t{info.height} * info.width * info.channels;
  const int64_t block = std::max<int64_t>(1, (int64_t{16} << 20) / image_bytes);  // ~16 MiB
  std::vector<uint8_t> pixels, hot;
  std::vector<int32_t> ids, super;
  for (int64_t at = o.first; at < o.first + count; at += block) {
    const int64_t n = std::min(block, o.first + count - at);
    pixels.resize(static_cast<size_t>(n * image_bytes));
    images.read_rows(at, n, pixels.data());
    ExampleBlock b{.count = n, .images = pixels.data()};
    if (info.multi_label) {
      hot.resize(static_cast<size_t>(n * info.num_classes));
      labels.read_rows(at, n, hot.data());
      b.multi_hot = hot.data();
    } else {
      ids.resize(static_cast<size_t>(n));
      labels.read_rows(at, n, ids.data());
      b.labels = ids.data();
    }
    if (spec.has_superclass) {
      super.resize(static_cast<size_t>(n));
      if (map != nullptr) {
        for (int64_t i = 0; i < n; ++i) super[i] = (*map)[static_cast<size_t>(ids[i])];
      } else {
        superclass.read_rows(at, n, super.data());
      }
      b.superclass = super.data();
    }
    writer.append(b);
  }
  writer.finish();
  return count;
}

void split_off_tail(const std::string& path, int64_t count, const std::string& tail_path) {
  const int64_t size = inspect_dataset(path).size;
  VMOE_CHECK(count > 0 && count < size, "cannot split ", count, " examples off ", path,
             ", which holds ", size, ": need 0 < count < ", size);
  copy_examples(path, tail_path, {.first = size - count, .count = count});
  copy_examples(path, path, {.first = 0, .count = size - count});
}

}  // namespace vmoe
