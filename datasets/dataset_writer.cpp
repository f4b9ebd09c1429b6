#include "datasets/dataset_writer.h"

#include <filesystem>
#include <system_error>

#include "core/check.h"
#include "core/h5.h"
#include "core/h5_vlen.h"
#include "datasets/schema.h"

namespace vmoe {

struct DatasetWriter::Files {
  h5::File file;
  h5::Dataset images, labels, superclass;
};

namespace {

// Chunked so random reads touch little, growable for streaming, uncompressed
// for fast random reads, and checksummed so corruption is detected.
h5::DatasetLayout layout_for(std::vector<int64_t> row_shape, int64_t element_bytes) {
  int64_t row_bytes = element_bytes;
  for (int64_t d : row_shape) row_bytes *= d;
  h5::DatasetLayout layout;
  layout.shape = row_shape;
  layout.shape.insert(layout.shape.begin(), 0);
  layout.chunk = row_shape;
  layout.chunk.insert(layout.chunk.begin(), schema::chunk_rows(row_bytes));
  layout.growable = true;
  layout.checksum = true;
  return layout;
}

constexpr int64_t kVlenChunkRows = 1024;

}  // namespace

DatasetWriter::DatasetWriter(const std::string& path, const DatasetSpec& spec)
    : path_(path), partial_path_(path + ".partial"), spec_(spec) {
  VMOE_CHECK(spec.height > 0 && spec.width > 0 && spec.channels > 0, path,
             ": image shape must be positive, got ", spec.height, "x", spec.width, "x",
             spec.channels);
  VMOE_CHECK(spec.num_classes > 0, path, ": num_classes must be positive, got ", spec.num_classes);
  VMOE_CHECK(static_cast<int64_t>(spec.class_names.size()) == spec.num_classes, path, ": got ",
             spec.class_names.size(), " class names for ", spec.num_classes, " classes");
  VMOE_CHECK(!spec.sparse_labels || spec.multi_label, path, ": sparse labels are multi-label");
  VMOE_CHECK(!spec.encoded || spec.channels == 1 || spec.channels == 3, path,
             ": encoded images have 1 or 3 channels, got ", spec.channels);
  // The destructor does not run if this throws: clean up here.
  try {
    files_ = std::make_unique<Files>();
    files_->file = h5::File::create(partial_path_);
    // Encoded rows are ~16-byte descriptors into HDF5's heap: 1024 per chunk.
    files_->images = spec.encoded ? h5::create_vlen_dataset<uint8_t>(files_->file, schema::kImages,
                                                                      kVlenChunkRows)
                                  : files_->file.create_dataset<uint8_t>(
                                        schema::kImages,
                                        layout_for({spec.height, spec.width, spec.channels}, 1));
    if (spec.sparse_labels) {
      files_->labels =
          h5::create_vlen_dataset<int32_t>(files_->file, schema::kLabels, kVlenChunkRows);
    } else if (spec.multi_label) {
      files_->labels =
          files_->file.create_dataset<uint8_t>(schema::kLabels, layout_for({spec.num_classes}, 1));
    } else {
      files_->labels = files_->file.create_dataset<int32_t>(schema::kLabels, layout_for({}, 4));
    }
    if (spec.has_superclass) {
      files_->superclass =
          files_->file.create_dataset<int32_t>(schema::kSuperclass, layout_for({}, 4));
    }
  } catch (...) {
    files_.reset();
    std::error_code ignored;
    std::filesystem::remove(partial_path_, ignored);
    throw;
  }
}

DatasetWriter::~DatasetWriter() {
  if (finished_) return;
  files_.reset();
  std::error_code ignored;
  std::filesystem::remove(partial_path_, ignored);
}

void DatasetWriter::append(const ExampleBlock& block) {
  VMOE_CHECK(!finished_, path_, ": append after finish");
  if (block.count == 0) return;
  VMOE_CHECK(block.images != nullptr, path_, ": block without images");
  VMOE_CHECK(!spec_.encoded || block.image_offsets != nullptr, path_,
             ": encoded block without image_offsets");
  const int64_t k = spec_.num_classes;
  if (spec_.sparse_labels) {
    VMOE_CHECK(block.label_ids != nullptr && block.label_offsets != nullptr, path_,
               ": sparse multi-label block without label_ids/label_offsets");
    for (int64_t i = 0; i < block.count; ++i) {
      for (int64_t e = block.label_offsets[i]; e < block.label_offsets[i + 1]; ++e) {
        VMOE_CHECK(block.label_ids[e] >= 0 && block.label_ids[e] < k, path_, ": example ",
                   size_ + i, " has class id ", block.label_ids[e], ", expected [0, ", k, ")");
      }
    }
  } else if (spec_.multi_label) {
    VMOE_CHECK(block.multi_hot != nullptr, path_, ": multi-label block without multi_hot");
    for (int64_t i = 0; i < block.count * k; ++i) {
      VMOE_CHECK(block.multi_hot[i] <= 1, path_, ": example ", size_ + i / k, " has value ",
                 int{block.multi_hot[i]}, " for class ", i % k, ", expected 0 or 1 (multi-hot)");
    }
  } else {
    VMOE_CHECK(block.labels != nullptr, path_, ": block without labels");
    for (int64_t i = 0; i < block.count; ++i) {
      VMOE_CHECK(block.labels[i] >= 0 && block.labels[i] < k, path_, ": example ", size_ + i,
                 " has label ", block.labels[i], ", expected [0, ", k, ")");
    }
  }
  if (spec_.has_superclass) {
    VMOE_CHECK(block.superclass != nullptr, path_, ": block without superclass");
    for (int64_t i = 0; i < block.count; ++i) {
      VMOE_CHECK(block.superclass[i] >= 0, path_, ": example ", size_ + i, " has superclass ",
                 block.superclass[i], ", expected >= 0");
    }
  }
  const std::span<const int64_t> image_offsets(block.image_offsets,
                                               block.image_offsets ? block.count + 1 : 0);
  if (spec_.encoded) {
    h5::write_vlen_rows(files_->images, size_, image_offsets, block.images);
  } else {
    files_->images.write_rows(size_, block.count, block.images);
  }
  if (spec_.sparse_labels) {
    h5::write_vlen_rows(files_->labels, size_,
                        std::span<const int64_t>(block.label_offsets, block.count + 1),
                        block.label_ids);
  } else if (spec_.multi_label) {
    files_->labels.write_rows(size_, block.count, block.multi_hot);
  } else {
    files_->labels.write_rows(size_, block.count, block.labels);
  }
  if (spec_.has_superclass) files_->superclass.write_rows(size_, block.count, block.superclass);
  size_ += block.count;
}

void DatasetWriter::finish() {
  VMOE_CHECK(!finished_, path_, ": finish called twice");
  VMOE_CHECK(size_ > 0, path_, ": no examples were written");
  files_->file.write_int64_attribute(schema::kNumClasses, spec_.num_classes);
  files_->file.write_strings_attribute(schema::kClassNames, spec_.class_names);
  if (spec_.encoded) {
    files_->file.write_int64_attribute(schema::kImageHeight, spec_.height);
    files_->file.write_int64_attribute(schema::kImageWidth, spec_.width);
    files_->file.write_int64_attribute(schema::kImageChannels, spec_.channels);
  }
  // Datasets first: the file only really closes (and flushes) with its last object.
  files_->images = h5::Dataset();
  files_->labels = h5::Dataset();
  files_->superclass = h5::Dataset();
  files_->file.close();
  files_.reset();
  std::error_code error;
  std::filesystem::rename(partial_path_, path_, error);
  VMOE_CHECK(!error, "cannot rename ", partial_path_, " to ", path_, ": ", error.message());
  finished_ = true;
}

}  // namespace vmoe
