// vmoe_import --format=tfrecord: TFRecord files of tf.Example (TFDS's
// ImageNet2012: "image" = encoded bytes, "label" = int64) into encoded
// single-label shards, one shard per input file, the image bytes as they
// are. A corrupt or truncated record stops the import with the file and the
// record's byte offset; the shard being written is discarded, the finished
// ones stay (a second run keeps them). Ranks take the files in turn.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vmoe {

struct TfRecordImport {
  std::vector<std::string> train_files, test_files;  // each list in order
  std::string output_dir;
  std::string image_key = "image", label_key = "label";
  std::vector<std::string> class_names;         // num_classes entries
  int height = 224, width = 224, channels = 3;  // what the loader decodes to by default
  bool skip_bad = false;  // skip records whose image is not a readable JPEG/PNG
  int rank = 0, world = 1;
  // After each shard: its path, images in it, input files done and in all (this rank's).
  std::function<void(const std::string& path, int64_t images, int64_t done, int64_t total)>
      progress;
};

struct TfRecordResult {
  int64_t written = 0, kept = 0, skipped = 0;  // this rank's images
  std::vector<std::string> skipped_records;    // this rank's, with why
};

TfRecordResult import_tfrecords(const TfRecordImport& options);

}  // namespace vmoe
