#include "datasets/importer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/check.h"
#include "datasets/cifar_reader.h"
#include "datasets/dataset_writer.h"
#include "datasets/idx_reader.h"
#include "datasets/image_resize.h"

namespace vmoe {
namespace fs = std::filesystem;
using import_detail::check_input_dir;
using import_detail::prepare_output_dir;
namespace {

// Examples converted per block: bounds memory whatever the dataset size.
constexpr int64_t kBlock = 4096;

const std::vector<std::string> kFashionMnistNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

const std::vector<std::string> kCifar10Names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};

const std::vector<std::string> kCifar100Names = {
    "apple",       "aquarium_fish", "baby",      "bear",       "beaver",       "bed",
    "bee",         "beetle",        "bicycle",   "bottle",     "bowl",         "boy",
    "bridge",      "bus",           "butterfly", "camel",      "can",          "castle",
    "caterpillar", "cattle",        "chair",     "chimpanzee", "clock",        "cloud",
    "cockroach",   "couch",         "crab",      "crocodile",  "cup",          "dinosaur",
    "dolphin",     "elephant",      "flatfish",  "forest",     "fox",          "girl",
    "hamster",     "house",         "kangaroo",  "keyboard",   "lamp",         "lawn_mower",
    "leopard",     "lion",          "lizard",    "lobster",    "man",          "maple_tree",
    "motorcycle",  "mountain",      "mouse",     "mushroom",   "oak_tree",     "orange",
    "orchid",      "otter",         "palm_tree", "pear",       "pickup_truck", "pine_tree",
    "plain",       "plate",         "poppy",     "porcupine",  "possum",       "rabbit",
    "raccoon",     "ray",           "road",      "rocket",     "rose",         "sea",
    "seal",        "shark",         "shrew",     "skunk",      "skyscraper",   "snail",
    "snake",       "spider",        "squirrel",  "streetcar",  "sunflower",    "sweet_pepper",
    "table",       "tank",          "telephone", "television", "tiger",        "tractor",
    "train",       "trout",         "tulip",     "turtle",     "wardrobe",     "whale",
    "willow_tree", "wolf",          "woman",     "worm"};

// dir/name.gz, else dir/name.
std::string find_idx(const std::string& dir, const std::string& name) {
  std::error_code ec;
  for (const std::string& candidate : {name + ".gz", name}) {
    const fs::path path = fs::path(dir) / candidate;
    if (fs::exists(path, ec)) return path.string();
  }
  fail(dir, ": missing ", name, ".gz (or uncompressed ", name, ")");
}

// Applies ImageImportOptions to blocks of images of one source shape: the
// block itself when nothing changes (the default), else fit_image per image.
class BlockFitter {
 public:
  BlockFitter(int height, int width, int channels, const ImageImportOptions& options)
      : from_{height, width, channels, {}},
        to_{options.height != 0 ? options.height : height,
            options.width != 0 ? options.width : width,
            options.channels != 0 ? options.channels : channels,
            {}} {}
  void set_shape(DatasetSpec& spec) const {
    spec.height = to_.height;
    spec.width = to_.width;
    spec.channels = to_.channels;
  }
  // Examples per block: bounded by bytes too once images are resized.
  int64_t block() const {
    return import_detail::block_examples(std::max(bytes(from_), bytes(to_)));
  }
  const uint8_t* fit(const uint8_t* images, int64_t n) {
    if (from_.height == to_.height && from_.width == to_.width && from_.channels == to_.channels)
      return images;
    out_.resize(n * bytes(to_));
    for (int64_t i = 0; i < n; ++i) {
      Image image = from_;
      image.pixels.assign(images + i * bytes(from_), images + (i + 1) * bytes(from_));
      image = fit_image(std::move(image), to_.height, to_.width, to_.channels);
      std::memcpy(out_.data() + i * bytes(to_), image.pixels.data(), bytes(to_));
    }
    return out_.data();
  }

 private:
  static int64_t bytes(const Image& shape) {
    return int64_t{shape.height} * shape.width * shape.channels;
  }
  Image from_, to_;
  std::vector<uint8_t> out_;
};

DatasetInfo import_idx_split(const std::string& images_path, const std::string& labels_path,
                             const std::vector<std::string>& class_names, const std::string& output,
                             const ImageImportOptions& options) {
  IdxReader images(images_path), labels(labels_path);
  VMOE_CHECK(images.dims().size() == 3, images_path, ": expected 3 dimensions [N, H, W], found ",
             images.dims().size());
  VMOE_CHECK(labels.dims().size() == 1, labels_path, ": expected 1 dimension [N], found ",
             labels.dims().size());
  VMOE_CHECK(images.count() == labels.count(), images_path, " has ", images.count(), " images but ",
             labels_path, " has ", labels.count(), " labels");
  BlockFitter fitter(static_cast<int>(images.dims()[1]), static_cast<int>(images.dims()[2]), 1,
                     options);
  DatasetSpec spec;
  fitter.set_shape(spec);
  spec.num_classes = static_cast<int64_t>(class_names.size());
  spec.class_names = class_names;
  DatasetWriter writer(output, spec);
  const int64_t block = fitter.block();
  std::vector<uint8_t> pixels(block * images.item_bytes()), raw_labels(block);
  std::vector<int32_t> block_labels(block);
  for (int64_t first = 0; first < images.count(); first += block) {
    const int64_t n = std::min(block, images.count() - first);
    images.read(n, pixels.data());
    labels.read(n, raw_labels.data());
    for (int64_t i = 0; i < n; ++i) {
      VMOE_CHECK(raw_labels[i] < spec.num_classes, labels_path, ": item ", first + i, " has label ",
                 int{raw_labels[i]}, ", expected [0, ", spec.num_classes, ")");
      block_labels[i] = raw_labels[i];
    }
    writer.append(
        {.count = n, .images = fitter.fit(pixels.data(), n), .labels = block_labels.data()});
  }
  images.expect_end();
  labels.expect_end();
  writer.finish();
  return inspect_dataset(output);
}

std::vector<std::string> require_files(const std::string& dir,
                                       const std::vector<std::string>& files) {
  std::vector<std::string> paths;
  for (const std::string& file : files) {
    const fs::path path = fs::path(dir) / file;
    std::error_code ec;
    VMOE_CHECK(fs::exists(path, ec), dir, ": missing ", file);
    paths.push_back(path.string());
  }
  return paths;
}

DatasetInfo import_cifar_split(CifarVariant variant, const std::string& input_dir,
                               const std::vector<std::string>& files,
                               const std::vector<std::string>& class_names,
                               const std::string& output, const ImageImportOptions& options) {
  const bool cifar100 = variant == CifarVariant::kCifar100;
  const std::vector<std::string> paths = require_files(input_dir, files);
  BlockFitter fitter(kCifarSide, kCifarSide, kCifarChannels, options);
  DatasetSpec spec;
  fitter.set_shape(spec);
  spec.num_classes = static_cast<int64_t>(class_names.size());
  spec.class_names = class_names;
  spec.has_superclass = cifar100;
  DatasetWriter writer(output, spec);
  const int64_t block = fitter.block();
  std::vector<uint8_t> pixels(block * kCifarImageBytes);
  std::vector<int32_t> labels(block), coarse(block);
  for (const std::string& path : paths) {
    CifarReader reader(path, variant);
    for (int64_t first = 0; first < reader.size(); first += block) {
      const int64_t n = std::min(block, reader.size() - first);
      reader.read(n, pixels.data(), labels.data(), coarse.data());
      writer.append({.count = n,
                     .images = fitter.fit(pixels.data(), n),
                     .labels = labels.data(),
                     .superclass = cifar100 ? coarse.data() : nullptr});
    }
  }
  writer.finish();
  return inspect_dataset(output);
}

// The archives unpack into a folder; accept either it or its parent.
std::string resolve_cifar_dir(const std::string& input_dir, const std::string& marker,
                              const std::string& subdir) {
  check_input_dir(input_dir);
  std::error_code ec;
  if (!fs::exists(fs::path(input_dir) / marker, ec) &&
      fs::exists(fs::path(input_dir) / subdir / marker, ec)) {
    return (fs::path(input_dir) / subdir).string();
  }
  return input_dir;
}

// The public datasets come split; only their image shape can change.
void check_public_options(const ImageImportOptions& options) {
  import_detail::check_image_options(options);
  VMOE_CHECK(options.test_fraction == 0.0, "--test_fraction applies to --format=png_folder only; ",
             "the public datasets come with a test split");
}

std::vector<std::string> names_or_default(const fs::path& file,
                                          const std::vector<std::string>& fallback) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return fallback;
  return read_class_names(file.string(), static_cast<int64_t>(fallback.size()));
}

}  // namespace

void import_detail::check_input_dir(const std::string& dir) {
  std::error_code ec;
  VMOE_CHECK(fs::is_directory(dir, ec), dir, ": no such directory");
}

std::string import_detail::prepare_output_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  VMOE_CHECK(!ec && fs::is_directory(dir), dir, ": cannot create the output directory",
             ec ? ": " + ec.message() : "");
  return dir;
}

void import_detail::check_image_options(const ImageImportOptions& options) {
  // Limits well inside int: height * width * channels must not overflow.
  constexpr int kMaxSide = 1 << 14;
  VMOE_CHECK((options.height == 0 && options.width == 0) ||
                 (options.height > 0 && options.width > 0 && options.height <= kMaxSide &&
                  options.width <= kMaxSide),
             "--image_size must be positive and at most ", kMaxSide, " per side, got ",
             options.height, "x", options.width);
  VMOE_CHECK(options.channels == 0 || options.channels == 1 || options.channels == 3,
             "--channels must be 1 or 3, got ", options.channels);
  VMOE_CHECK(options.test_fraction >= 0.0 && options.test_fraction < 1.0,
             "--test_fraction must be in [0, 1), got ", options.test_fraction);
}

int64_t import_detail::block_examples(int64_t image_bytes) {
  constexpr int64_t kBlockBytes = int64_t{16} << 20;
  return std::clamp<int64_t>(kBlockBytes / std::max<int64_t>(image_bytes, 1), 1, kBlock);
}

std::vector<DatasetInfo> import_fashion_mnist(const std::string& input_dir,
                                              const std::string& output_dir,
                                              const ImageImportOptions& options) {
  check_public_options(options);
  check_input_dir(input_dir);
  // Find every input before converting anything.
  const std::string train_images = find_idx(input_dir, "train-images-idx3-ubyte");
  const std::string train_labels = find_idx(input_dir, "train-labels-idx1-ubyte");
  const std::string test_images = find_idx(input_dir, "t10k-images-idx3-ubyte");
  const std::string test_labels = find_idx(input_dir, "t10k-labels-idx1-ubyte");
  const fs::path out = prepare_output_dir(output_dir);
  std::vector<DatasetInfo> infos;
  infos.push_back(import_idx_split(train_images, train_labels, kFashionMnistNames,
                                   (out / "train.h5").string(), options));
  infos.push_back(import_idx_split(test_images, test_labels, kFashionMnistNames,
                                   (out / "test.h5").string(), options));
  return infos;
}

std::vector<DatasetInfo> import_cifar10(const std::string& input_dir, const std::string& output_dir,
                                        const ImageImportOptions& options) {
  check_public_options(options);
  const std::string dir = resolve_cifar_dir(input_dir, "test_batch.bin", "cifar-10-batches-bin");
  const fs::path out = prepare_output_dir(output_dir);
  const std::vector<std::string> names =
      names_or_default(fs::path(dir) / "batches.meta.txt", kCifar10Names);
  std::vector<std::string> train_files;
  for (int i = 1; i <= 5; ++i) train_files.push_back("data_batch_" + std::to_string(i) + ".bin");
  require_files(dir, train_files);  // every input before converting anything
  require_files(dir, {"test_batch.bin"});
  std::vector<DatasetInfo> infos;
  infos.push_back(import_cifar_split(CifarVariant::kCifar10, dir, train_files, names,
                                     (out / "train.h5").string(), options));
  infos.push_back(import_cifar_split(CifarVariant::kCifar10, dir, {"test_batch.bin"}, names,
                                     (out / "test.h5").string(), options));
  return infos;
}

std::vector<DatasetInfo> import_cifar100(const std::string& input_dir,
                                         const std::string& output_dir,
                                         const ImageImportOptions& options) {
  check_public_options(options);
  const std::string dir = resolve_cifar_dir(input_dir, "test.bin", "cifar-100-binary");
  const fs::path out = prepare_output_dir(output_dir);
  const std::vector<std::string> names =
      names_or_default(fs::path(dir) / "fine_label_names.txt", kCifar100Names);
  require_files(dir, {"train.bin", "test.bin"});  // every input before converting anything
  std::vector<DatasetInfo> infos;
  infos.push_back(import_cifar_split(CifarVariant::kCifar100, dir, {"train.bin"}, names,
                                     (out / "train.h5").string(), options));
  infos.push_back(import_cifar_split(CifarVariant::kCifar100, dir, {"test.bin"}, names,
                                     (out / "test.h5").string(), options));
  return infos;
}

std::vector<DatasetInfo> import_dataset(const std::string& format, const std::string& input_dir,
                                        const std::string& output_dir,
                                        const ImageImportOptions& options) {
  if (format == "png_folder") return import_png_folder(input_dir, output_dir, options);
  if (format == "npy") return import_npy(input_dir, output_dir, options);
  if (format == "fashion_mnist") return import_fashion_mnist(input_dir, output_dir, options);
  if (format == "cifar10") return import_cifar10(input_dir, output_dir, options);
  if (format == "cifar100") return import_cifar100(input_dir, output_dir, options);
  fail("unknown format '", format,
       "', expected fashion_mnist, cifar10, cifar100, png_folder or npy");
}

}  // namespace vmoe
