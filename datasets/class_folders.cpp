#include "datasets/class_folders.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <tuple>

#include "core/check.h"
#include "core/random.h"

namespace vmoe {
namespace fs = std::filesystem;
namespace {

bool is_hidden(const fs::path& path) {
  return path.filename().string().starts_with(".");
}

bool has_extension(const fs::path& path, const std::vector<std::string>& extensions) {
  std::string ext = path.extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return std::find(extensions.begin(), extensions.end(), ext) != extensions.end();
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

}  // namespace

std::vector<std::string> class_folders(const fs::path& dir, const std::string& files) {
  std::vector<std::string> names;
  for (const fs::path& path :
       sorted_entries(dir, [](const fs::directory_entry& e) { return e.is_directory(); })) {
    names.push_back(path.filename().string());
  }
  VMOE_CHECK(!names.empty(), dir.string(), ": no class folders (expected one subfolder of ", files,
             " per class)");
  return names;
}

std::vector<std::string> files_with_extensions(const fs::path& dir,
                                               const std::vector<std::string>& extensions) {
  std::vector<std::string> paths;
  for (const fs::path& path : sorted_entries(dir, [&](const fs::directory_entry& e) {
         return e.is_regular_file() && has_extension(e.path(), extensions);
       })) {
    paths.push_back(path.string());
  }
  return paths;
}

ClassFiles files_per_class(const fs::path& dir, const std::vector<std::string>& classes,
                           const std::vector<std::string>& extensions, const std::string& files) {
  ClassFiles out;
  for (const std::string& name : classes) {
    const fs::path class_dir = dir / name;
    std::vector<std::string> paths = files_with_extensions(class_dir, extensions);
    VMOE_CHECK(!paths.empty(), class_dir.string(), ": empty class folder (no ", files, ")");
    out.push_back(std::move(paths));
  }
  return out;
}

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

}  // namespace vmoe
