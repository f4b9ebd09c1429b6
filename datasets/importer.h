// Converts public datasets from their distribution formats, and your own
// images (a PNG folder, NumPy arrays), into the HDF5 schema
// (datasets/README.md): output_dir/train.h5 and output_dir/test.h5.
// Files are written under a temporary name and renamed when complete.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset_info.h"

namespace vmoe {

// What every image is converted to (all formats), and the split of a PNG
// folder without train/ and test/.
struct ImageImportOptions {
  int height = 0, width = 0;  // 0x0: keep the source size (then all sources must agree)
  int channels = 0;           // 1 or 3; 0: 1 if every source is gray, else 3
  // png_folder without train/ and test/: the fraction of each class that goes
  // to test.h5 (required, in (0, 1)), chosen by a shuffle seeded with split_seed.
  double test_fraction = 0.0;
  uint64_t split_seed = 0;
};

// IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
// t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]). The public
// datasets take the size and channel options, not test_fraction.
std::vector<DatasetInfo> import_fashion_mnist(const std::string& input_dir,
                                              const std::string& output_dir,
                                              const ImageImportOptions& options = {});
// The CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin and
// optionally batches.meta.txt); input_dir may also be its parent folder.
std::vector<DatasetInfo> import_cifar10(const std::string& input_dir, const std::string& output_dir,
                                        const ImageImportOptions& options = {});
// The CIFAR-100 binary version (train.bin, test.bin and optionally
// fine_label_names.txt); coarse labels become /superclass.
std::vector<DatasetInfo> import_cifar100(const std::string& input_dir,
                                         const std::string& output_dir,
                                         const ImageImportOptions& options = {});

// A folder of PNGs, either DIR/train/CLASS/*.png and DIR/test/CLASS/*.png or
// DIR/CLASS/*.png (split by options.test_fraction); see datasets/README.md.
std::vector<DatasetInfo> import_png_folder(const std::string& input_dir,
                                           const std::string& output_dir,
                                           const ImageImportOptions& options);
// NumPy files train_images.npy, train_labels.npy, test_images.npy,
// test_labels.npy and optionally class_names.txt.
std::vector<DatasetInfo> import_npy(const std::string& input_dir, const std::string& output_dir,
                                    const ImageImportOptions& options);

// Dispatches on format: "fashion_mnist", "cifar10", "cifar100", "png_folder"
// or "npy".
std::vector<DatasetInfo> import_dataset(const std::string& format, const std::string& input_dir,
                                        const std::string& output_dir,
                                        const ImageImportOptions& options = {});

// Shared by the importer implementations.
namespace import_detail {
// Errors unless dir is an existing directory.
void check_input_dir(const std::string& dir);
// Errors unless the options are valid (size both set or both 0, channels 0,
// 1 or 3, test_fraction in [0, 1)).
void check_image_options(const ImageImportOptions& options);
// Creates dir (and its parents) if missing; returns it.
std::string prepare_output_dir(const std::string& dir);
// Examples per block for images of `image_bytes`: about 16 MiB, so memory
// stays bounded whatever the dataset and image size.
int64_t block_examples(int64_t image_bytes);
}  // namespace import_detail

}  // namespace vmoe
