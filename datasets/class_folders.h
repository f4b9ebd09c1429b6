// A folder of class folders (DIR/CLASS/files): the class names, each class's
// files, a seeded per-class split, and the interleaved output order. Shared by
// the png_folder importer (raw pixels) and the image_folder importer (encoded
// bytes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace vmoe {

// Per split, per class (in class order): the files, sorted by name.
using ClassFiles = std::vector<std::vector<std::string>>;

struct LabeledFile {
  std::string path;
  int32_t label = 0;
};

// The subfolders of dir (not hidden), sorted byte-wise: the class names.
// `files` says what a class folder holds, for the error ("... of .png files").
std::vector<std::string> class_folders(const std::filesystem::path& dir, const std::string& files);

// The files of dir whose extension (lower-cased, with the dot) is one of
// `extensions`, not hidden, sorted by name; full paths.
std::vector<std::string> files_with_extensions(const std::filesystem::path& dir,
                                               const std::vector<std::string>& extensions);

// The files of each class folder whose extension (lower-cased, with the dot)
// is one of `extensions`, sorted by name; an empty class folder is an error.
ClassFiles files_per_class(const std::filesystem::path& dir,
                           const std::vector<std::string>& classes,
                           const std::vector<std::string>& extensions, const std::string& files);

// train/ and test/ must name the same classes.
void check_same_classes(const std::filesystem::path& train,
                        const std::vector<std::string>& train_classes,
                        const std::filesystem::path& test,
                        const std::vector<std::string>& test_classes);

// Moves round(fraction * n) files of each class (at most n - 1, so every
// class keeps a training file) into test. Which ones: a Fisher-Yates shuffle
// of the class's sorted file indices (i from n-1 down to 1 swaps with
// RandomStream(seed, kDataOrder).below(i + 1), one stream through the classes
// in class order); the first k shuffled indices go to test. Both parts keep
// sorted-name order.
void split_classes(ClassFiles& train, ClassFiles& test, double fraction, uint64_t seed);

// The output order: classes interleaved in proportion to their sizes (file
// i of a class of n sits at (i + 0.5) / n of the split, ties by class), so
// any tail or shard has about the class mix of the whole; each class stays
// in sorted-name order.
std::vector<LabeledFile> interleave(const ClassFiles& classes);

}  // namespace vmoe
