// Converts public datasets from their distribution formats into the HDF5
// schema (datasets/README.md): output_dir/train.h5 and output_dir/test.h5.
// Files are written under a temporary name and renamed when complete.
#pragma once

#include <string>
#include <vector>

#include "datasets/dataset_info.h"

namespace vmoe {

// IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
// t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]).
std::vector<DatasetInfo> import_fashion_mnist(const std::string& input_dir,
                                              const std::string& output_dir);
// The CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin and
// optionally batches.meta.txt); input_dir may also be its parent folder.
std::vector<DatasetInfo> import_cifar10(const std::string& input_dir,
                                        const std::string& output_dir);
// The CIFAR-100 binary version (train.bin, test.bin and optionally
// fine_label_names.txt); coarse labels become /superclass.
std::vector<DatasetInfo> import_cifar100(const std::string& input_dir,
                                         const std::string& output_dir);

// Dispatches on format: "fashion_mnist", "cifar10" or "cifar100".
std::vector<DatasetInfo> import_dataset(const std::string& format, const std::string& input_dir,
                                        const std::string& output_dir);

}  // namespace vmoe
