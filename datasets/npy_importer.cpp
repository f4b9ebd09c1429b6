// import_npy: images and labels as NumPy arrays (datasets/README.md).
#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "datasets/cifar_reader.h"
#include "datasets/dataset_writer.h"
#include "datasets/image_resize.h"
#include "datasets/importer.h"
#include "datasets/npy_reader.h"

namespace vmoe {
namespace fs = std::filesystem;
namespace {

// .npy data is little-endian; floats are copied as they are.
static_assert(std::endian::native == std::endian::little,
              "npy import assumes a little-endian host");

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// The images of one split and what their dtype and shape say about them.
struct ImageSource {
  std::string path;
  int height = 0, width = 0, channels = 0;
  bool float32 = false;  // else uint8
  int64_t count = 0;
};

ImageSource inspect_images(const std::string& path) {
  NpyReader reader(path);
  const std::vector<int64_t>& s = reader.shape();
  VMOE_CHECK(s.size() == 3 || s.size() == 4, path, ": images have shape ", shape_string(s),
             ", expected [N, H, W] or [N, H, W, C]");
  const int64_t channels = s.size() == 4 ? s[3] : 1;
  VMOE_CHECK(channels == 1 || channels == 3, path, ": images have shape ", shape_string(s),
             ": C = ", channels, ", expected 1 (gray) or 3 (RGB)");
  VMOE_CHECK(s[0] > 0 && s[1] > 0 && s[2] > 0 && s[1] <= INT_MAX / 4 && s[2] <= INT_MAX / 4, path,
             ": images have shape ", shape_string(s), ", expected N, H and W to be positive");
  const bool uint8 = reader.kind() == 'u' && reader.item_size() == 1;
  const bool float32 = reader.kind() == 'f' && reader.item_size() == 4;
  VMOE_CHECK(uint8 || float32, path, ": images have dtype '", reader.descr(),
             "', expected uint8 ('|u1') or float32 ('<f4', values in [0, 1])");
  return {path, static_cast<int>(s[1]), static_cast<int>(s[2]), static_cast<int>(channels), float32,
          s[0]};
}

// Labels [N] of any integer dtype, each >= 0.
std::vector<int32_t> read_labels(const std::string& path, const ImageSource& images) {
  NpyReader reader(path);
  VMOE_CHECK(reader.shape().size() == 1, path, ": labels have shape ", shape_string(reader.shape()),
             ", expected [N]");
  VMOE_CHECK(reader.kind() == 'i' || reader.kind() == 'u', path, ": labels have dtype '",
             reader.descr(), "', expected an integer dtype (e.g. '<i8' or '|u1')");
  VMOE_CHECK(reader.count() == images.count, images.path, " has ", images.count, " images but ",
             path, " has ", reader.count(), " labels");
  std::vector<int64_t> raw(reader.count());
  reader.read_integers(reader.count(), raw.data());
  std::vector<int32_t> labels(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    VMOE_CHECK(raw[i] >= 0, path, ": label ", i, " is ", raw[i], ", expected >= 0");
    VMOE_CHECK(raw[i] < INT32_MAX, path, ": label ", i, " is ", raw[i], ", which is too large");
    labels[i] = static_cast<int32_t>(raw[i]);
  }
  return labels;
}

// One image of `source` from its raw .npy bytes; float32 in [0, 1] becomes
// round(255 v).
Image decode_row(const ImageSource& source, const uint8_t* raw, int64_t index) {
  Image image{source.height, source.width, source.channels, {}};
  const size_t n = static_cast<size_t>(source.height) * source.width * source.channels;
  if (!source.float32) {
    image.pixels.assign(raw, raw + n);
    return image;
  }
  image.pixels.resize(n);
  for (size_t i = 0; i < n; ++i) {
    float v;
    std::memcpy(&v, raw + 4 * i, 4);
    VMOE_CHECK(v >= 0.0f && v <= 1.0f, source.path, ": image ", index, " has value ", v,
               " at element ", i, ", expected float32 values in [0, 1]");
    image.pixels[i] = static_cast<uint8_t>(std::lround(v * 255.0));
  }
  return image;
}

DatasetInfo write_split(const ImageSource& source, const std::vector<int32_t>& labels,
                        const DatasetSpec& spec, const std::string& output) {
  NpyReader reader(source.path);
  DatasetWriter writer(output, spec);
  const int64_t image_bytes = int64_t{spec.height} * spec.width * spec.channels;
  const int64_t raw_bytes = reader.row_elements() * reader.item_size();
  const int64_t block = import_detail::block_examples(std::max(image_bytes, raw_bytes));
  std::vector<uint8_t> raw(block * raw_bytes), pixels(block * image_bytes);
  for (int64_t first = 0; first < source.count; first += block) {
    const int64_t n = std::min(block, source.count - first);
    reader.read(n, raw.data());
    for (int64_t i = 0; i < n; ++i) {
      const Image image = fit_image(decode_row(source, raw.data() + i * raw_bytes, first + i),
                                    spec.height, spec.width, spec.channels);
      std::memcpy(pixels.data() + i * image_bytes, image.pixels.data(), image_bytes);
    }
    writer.append({.count = n, .images = pixels.data(), .labels = labels.data() + first});
  }
  writer.finish();
  return inspect_dataset(output);
}

}  // namespace

std::vector<DatasetInfo> import_npy(const std::string& input_dir, const std::string& output_dir,
                                    const ImageImportOptions& options) {
  import_detail::check_image_options(options);
  VMOE_CHECK(options.test_fraction == 0.0, "--test_fraction applies to --format=png_folder ",
             "only; npy input has its own test_images.npy");
  import_detail::check_input_dir(input_dir);
  const fs::path dir(input_dir);
  // Every input before converting anything.
  const ImageSource train = inspect_images((dir / "train_images.npy").string());
  const ImageSource test = inspect_images((dir / "test_images.npy").string());
  const std::vector<int32_t> train_labels = read_labels((dir / "train_labels.npy").string(), train);
  const std::vector<int32_t> test_labels = read_labels((dir / "test_labels.npy").string(), test);

  DatasetSpec spec;
  spec.height = options.height != 0 ? options.height : train.height;
  spec.width = options.width != 0 ? options.width : train.width;
  if (options.height == 0) {
    VMOE_CHECK(test.height == train.height && test.width == train.width, test.path,
               " has images of ", test.height, "x", test.width, " but ", train.path, " has ",
               train.height, "x", train.width, "; pass --image_size=HxW to resize both");
  }
  spec.channels = options.channels != 0                         ? options.channels
                  : (train.channels == 1 && test.channels == 1) ? 1
                                                                : 3;
  int32_t max_label = 0;
  for (const auto* labels : {&train_labels, &test_labels}) {
    for (int32_t label : *labels) max_label = std::max(max_label, label);
  }
  spec.num_classes = int64_t{max_label} + 1;
  const fs::path names_file = dir / "class_names.txt";
  std::error_code ec;
  if (fs::exists(names_file, ec)) {
    spec.class_names = read_class_names(names_file.string(), spec.num_classes);
  } else {
    for (int64_t k = 0; k < spec.num_classes; ++k) spec.class_names.push_back(std::to_string(k));
  }

  const fs::path out = import_detail::prepare_output_dir(output_dir);
  std::vector<DatasetInfo> infos;
  infos.push_back(write_split(train, train_labels, spec, (out / "train.h5").string()));
  infos.push_back(write_split(test, test_labels, spec, (out / "test.h5").string()));
  return infos;
}

}  // namespace vmoe
