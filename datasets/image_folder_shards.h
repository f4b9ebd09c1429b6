// vmoe_import --format=image_folder: a folder of class folders of JPEG and
// PNG files into sharded encoded datasets (datasets/README.md). Each file is
// stored as its own bytes, not re-encoded, after its header (format, size,
// channels) is read to check it is an image. Shards are written by the ranks
// in turn (rank r: shards r, r + world, ...), each file read and checked by a
// pool of threads; a shard already complete is kept, so an interrupted import
// resumes where it stopped.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vmoe {

struct ImageFolderImport {
  std::string input_dir;          // DIR/train/CLASS + DIR/val|test/CLASS, or DIR/CLASS
  std::string output_dir;         // OUT/train-SSSSS-of-TTTTT.h5, OUT/test-...
  int height = 224, width = 224;  // the size the loader produces by default
  int channels = 3;               // what the loader decodes to: 1 or 3
  int64_t images_per_shard = 10000;
  double test_fraction = 0;  // DIR/CLASS only: the share of each class put in test
  // DIR/val as one flat folder of images (ImageNet's layout): their classes,
  // one per line, either "CLASS" for each file in sorted-name order, or
  // "FILE CLASS" (FILE with or without its extension); CLASS is a class
  // folder's name or a label number.
  std::string val_labels;
  // "FOLDER NAME..." per line: the class names stored for those folders
  // (e.g. ImageNet's "n01440764 tench, Tinca tinca"); others keep the folder name.
  std::string class_map;
  uint64_t split_seed = 0;
  bool skip_bad = false;  // skip (and count) files that are not readable images
  int rank = 0, world = 1;
  int threads = 1;
  // Called after each shard this rank writes or finds complete: its path,
  // images in it, images this rank has written so far and has in all.
  std::function<void(const std::string& path, int64_t images, int64_t done, int64_t total)>
      progress;
};

struct ImageFolderSplit {
  std::string name;  // "train" or "test"
  int64_t files = 0, shards = 0;
  std::string pattern;  // OUT/train-*.h5: what --train_data / --eval_data take
};

struct ImageFolderResult {
  std::vector<std::string> class_names;  // as stored (after class_map)
  std::vector<ImageFolderSplit> splits;
  // This rank's counts: images written, images in shards found complete,
  // bad files skipped (--skip_bad).
  int64_t written = 0, kept = 0, skipped = 0;
  std::vector<std::string> skipped_files;  // this rank's, with why
};

ImageFolderResult import_image_folder(const ImageFolderImport& options);

}  // namespace vmoe
