// import_png_folder: a folder of class folders of PNG files (datasets/README.md).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "datasets/class_folders.h"
#include "datasets/dataset_writer.h"
#include "datasets/importer.h"
#include "datasets/png_reader.h"

namespace vmoe {
namespace fs = std::filesystem;
namespace {

constexpr char kPngFiles[] = ".png files";

struct Shape {
  int height = 0, width = 0, channels = 0;
};

// Reads every header first, so that size and format problems surface before
// anything is written: the output shape is options' or the common source size,
// and 1 channel only if every source is gray.
Shape output_shape(const std::vector<const ClassFiles*>& splits,
                   const ImageImportOptions& options) {
  Shape shape{options.height, options.width, 1};
  std::string first;
  PngHeader first_header;
  bool color = false;
  for (const ClassFiles* split : splits) {
    for (const std::vector<std::string>& files : *split) {
      for (const std::string& path : files) {
        const PngHeader header = read_png_header(path);
        color = color || header.channels == 3;
        if (first.empty()) {
          first = path;
          first_header = header;
        } else if (options.height == 0) {
          VMOE_CHECK(header.height == first_header.height && header.width == first_header.width,
                     path, ": image is ", header.height, "x", header.width, " but ", first, " is ",
                     first_header.height, "x", first_header.width,
                     "; pass --image_size=HxW to resize every image to one size");
        }
      }
    }
  }
  if (options.height == 0) {
    shape.height = first_header.height;
    shape.width = first_header.width;
  }
  shape.channels = options.channels != 0 ? options.channels : (color ? 3 : 1);
  return shape;
}

DatasetInfo write_split(const std::vector<LabeledFile>& files, const Shape& shape,
                        const std::vector<std::string>& class_names, const std::string& output) {
  DatasetSpec spec;
  spec.height = shape.height;
  spec.width = shape.width;
  spec.channels = shape.channels;
  spec.num_classes = static_cast<int64_t>(class_names.size());
  spec.class_names = class_names;
  DatasetWriter writer(output, spec);
  const int64_t image_bytes = int64_t{shape.height} * shape.width * shape.channels;
  const int64_t block = import_detail::block_examples(image_bytes);
  std::vector<uint8_t> pixels(block * image_bytes);
  std::vector<int32_t> labels(block);
  const auto total = static_cast<int64_t>(files.size());
  for (int64_t first = 0; first < total; first += block) {
    const int64_t n = std::min(block, total - first);
    for (int64_t i = 0; i < n; ++i) {
      const LabeledFile& file = files[first + i];
      const Image image = fit_image(read_png(file.path), shape.height, shape.width, shape.channels);
      std::memcpy(pixels.data() + i * image_bytes, image.pixels.data(), image_bytes);
      labels[i] = file.label;
    }
    writer.append({.count = n, .images = pixels.data(), .labels = labels.data()});
  }
  writer.finish();
  return inspect_dataset(output);
}

}  // namespace

std::vector<DatasetInfo> import_png_folder(const std::string& input_dir,
                                           const std::string& output_dir,
                                           const ImageImportOptions& options) {
  import_detail::check_image_options(options);
  import_detail::check_input_dir(input_dir);
  const fs::path dir(input_dir), train_dir = dir / "train", test_dir = dir / "test";
  std::error_code ec;
  const bool has_train = fs::is_directory(train_dir, ec), has_test = fs::is_directory(test_dir, ec);
  VMOE_CHECK(has_train == has_test, input_dir, ": has ", (has_train ? "train/" : "test/"),
             " but no ", (has_train ? "test/" : "train/"),
             " folder; expected both (train/CLASS/*.png and test/CLASS/*.png) or neither ",
             "(CLASS/*.png, split with --test_fraction)");
  std::vector<std::string> classes;
  ClassFiles train, test;
  if (has_train) {
    VMOE_CHECK(options.test_fraction == 0.0, input_dir, ": has train/ and test/ folders, so ",
               "--test_fraction does not apply (it splits a folder of class folders)");
    classes = class_folders(train_dir, kPngFiles);
    check_same_classes(train_dir, classes, test_dir, class_folders(test_dir, kPngFiles));
    train = files_per_class(train_dir, classes, {".png"}, kPngFiles);
    test = files_per_class(test_dir, classes, {".png"}, kPngFiles);
  } else {
    VMOE_CHECK(options.test_fraction > 0.0, input_dir, ": no train/ and test/ folders, so the ",
               "class folders must be split: pass --test_fraction (e.g. 0.2)");
    classes = class_folders(dir, kPngFiles);
    train = files_per_class(dir, classes, {".png"}, kPngFiles);
    split_classes(train, test, options.test_fraction, options.split_seed);
    size_t test_count = 0;
    for (const auto& files : test) test_count += files.size();
    VMOE_CHECK(test_count > 0, input_dir, ": --test_fraction=", options.test_fraction,
               " selects no test images (classes are too small); use a larger fraction");
  }
  const Shape shape = output_shape({&train, &test}, options);
  const fs::path out = import_detail::prepare_output_dir(output_dir);
  std::vector<DatasetInfo> infos;
  infos.push_back(write_split(interleave(train), shape, classes, (out / "train.h5").string()));
  infos.push_back(write_split(interleave(test), shape, classes, (out / "test.h5").string()));
  return infos;
}

}  // namespace vmoe
