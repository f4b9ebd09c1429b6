// import_png_folder: a folder of class folders of PNG files (datasets/README.md).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "core/check.h"
#include "core/random.h"
#include "datasets/dataset_writer.h"
#include "datasets/importer.h"
#include "datasets/png_reader.h"

namespace vmoe {
namespace fs = std::filesystem;
namespace {

// Per split, per class (in class order): the files, sorted by name.
using ClassFiles = std::vector<std::vector<std::string>>;

struct LabeledFile {
  std::string path;
  int32_t label = 0;
};

bool is_hidden(const fs::path& path) {
  return path.filename().string().starts_with(".");
}

bool has_png_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".png";
}

// The entries of dir that pass `keep`, sorted by name (byte-wise).
template <typename Keep>
std::vector<fs::path> sorted_entries(const fs::path& dir, Keep keep) {
  std::vector<fs::path> out;
  try {
    for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
      if (!is_hidden(entry.path()) && keep(entry)) out.push_back(entry.path());
    }
  } catch (const fs::filesystem_error& e) {
    fail(dir.string(), ": cannot list the folder: ", e.code().message());
  }
  std::sort(out.begin(), out.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
  return out;
}

std::vector<std::string> class_folders(const fs::path& dir) {
  std::vector<std::string> names;
  for (const fs::path& path :
       sorted_entries(dir, [](const fs::directory_entry& e) { return e.is_directory(); })) {
    names.push_back(path.filename().string());
  }
  VMOE_CHECK(!names.empty(), dir.string(),
             ": no class folders (expected one subfolder of .png files per class)");
  return names;
}

std::vector<std::string> png_files(const fs::path& class_dir) {
  std::vector<std::string> files;
  for (const fs::path& path : sorted_entries(class_dir, [](const fs::directory_entry& e) {
         return e.is_regular_file() && has_png_extension(e.path());
       })) {
    files.push_back(path.string());
  }
  VMOE_CHECK(!files.empty(), class_dir.string(), ": empty class folder (no .png files)");
  return files;
}

ClassFiles files_per_class(const fs::path& dir, const std::vector<std::string>& classes) {
  ClassFiles out;
  for (const std::string& name : classes) out.push_back(png_files(dir / name));
  return out;
}

// DIR/train and DIR/test must name the same classes.
void check_same_classes(const fs::path& train, const std::vector<std::string>& train_classes,
                        const fs::path& test, const std::vector<std::string>& test_classes) {
  for (const auto& [a, a_dir, b, b_dir] :
       {std::tuple{&train_classes, &train, &test_classes, &test},
        std::tuple{&test_classes, &test, &train_classes, &train}}) {
    for (const std::string& name : *a) {
      VMOE_CHECK(std::binary_search(b->begin(), b->end(), name), train.string(), " and ",
                 test.string(), " have different class folders: '", name, "' is in ",
                 a_dir->string(), " but not in ", b_dir->string());
    }
  }
}

// Layout (b): moves round(fraction * n) files of each class (at most n - 1,
// so every class keeps a training file) into test. Which ones: a Fisher-Yates
// shuffle of the class's sorted file indices (i from n-1 down to 1 swaps with
// RandomStream(seed, kDataOrder).below(i + 1), one stream through the classes
// in class order); the first k shuffled indices go to test. Both parts keep
// sorted-name order.
void split_classes(ClassFiles& train, ClassFiles& test, double fraction, uint64_t seed) {
  RandomStream rng(seed, Stream::kDataOrder);
  test.assign(train.size(), {});
  for (size_t c = 0; c < train.size(); ++c) {
    std::vector<std::string>& files = train[c];
    const int64_t n = static_cast<int64_t>(files.size());
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    const int64_t k = std::min(static_cast<int64_t>(std::llround(fraction * n)), n - 1);
    std::vector<bool> to_test(n, false);
    for (int64_t i = 0; i < k; ++i) to_test[order[i]] = true;
    std::vector<std::string> keep;
    for (int64_t i = 0; i < n; ++i) (to_test[i] ? test[c] : keep).push_back(files[i]);
    files = std::move(keep);
  }
}

// The output order: classes interleaved in proportion to their sizes (file
// i of a class of n sits at (i + 0.5) / n of the split, ties by class), so
// any tail, e.g. the one --validation_size moves to val.h5, has about the
// class mix of the whole; each class stays in sorted-name order.
std::vector<LabeledFile> interleave(const ClassFiles& classes) {
  struct Key {
    int64_t i, n;
    int32_t label;
  };
  std::vector<Key> keys;
  for (size_t c = 0; c < classes.size(); ++c) {
    const auto n = static_cast<int64_t>(classes[c].size());
    for (int64_t i = 0; i < n; ++i) keys.push_back({i, n, static_cast<int32_t>(c)});
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    const int64_t lhs = (2 * a.i + 1) * b.n, rhs = (2 * b.i + 1) * a.n;  // exact fractions
    return lhs != rhs ? lhs < rhs : a.label < b.label;
  });
  std::vector<LabeledFile> out;
  for (const Key& k : keys) out.push_back({classes[k.label][k.i], k.label});
  return out;
}

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
    classes = class_folders(train_dir);
    check_same_classes(train_dir, classes, test_dir, class_folders(test_dir));
    train = files_per_class(train_dir, classes);
    test = files_per_class(test_dir, classes);
  } else {
    VMOE_CHECK(options.test_fraction > 0.0, input_dir, ": no train/ and test/ folders, so the ",
               "class folders must be split: pass --test_fraction (e.g. 0.2)");
    classes = class_folders(dir);
    train = files_per_class(dir, classes);
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
