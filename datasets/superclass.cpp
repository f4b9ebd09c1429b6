#include "datasets/superclass.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/check.h"

namespace vmoe {
namespace {

// Splits one CSV line (fields may be "quoted", with "" for a quote).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      out.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

}  // namespace

ConfusionMatrix read_confusion_csv(const std::string& path) {
  std::ifstream in(path);
  VMOE_CHECK(in.good(), path, ": cannot open the confusion matrix");
  std::string line;
  VMOE_CHECK(static_cast<bool>(std::getline(in, line)), path, ": empty file");
  ConfusionMatrix m;
  const std::vector<std::string> header = csv_fields(line);
  m.class_names.assign(header.begin() + 1, header.end());
  const size_t k = m.class_names.size();
  VMOE_CHECK(k >= 1, path, ": no classes in the header");
  for (size_t row = 0; row < k; ++row) {
    VMOE_CHECK(static_cast<bool>(std::getline(in, line)), path, ": expected ", k,
               " rows, found ", row);
    const std::vector<std::string> f = csv_fields(line);
    VMOE_CHECK(f.size() == k + 1, path, ": row ", row + 1, " has ", f.size() - 1,
               " counts, expected ", k);
    for (size_t j = 1; j <= k; ++j) {
      size_t used = 0;
      int64_t v = -1;
      try {
        v = std::stoll(f[j], &used);
      } catch (const std::exception&) {
      }
      VMOE_CHECK(used == f[j].size() && v >= 0, path, ": row ", row + 1, ": '", f[j],
                 "' is not a count");
      m.counts.push_back(v);
    }
  }
  return m;
}

std::vector<int32_t> cluster_confusion(const ConfusionMatrix& m, int num_groups) {
  const int k = static_cast<int>(m.class_names.size());
  VMOE_CHECK(num_groups >= 1 && num_groups <= k, "cannot make ", num_groups,
             " super-classes out of ", k, " classes");
  std::vector<double> rate(static_cast<size_t>(k) * k, 0.0);
  for (int i = 0; i < k; ++i) {
    double total = 0;
    for (int j = 0; j < k; ++j) total += static_cast<double>(m.counts[i * k + j]);
    if (total > 0)
      for (int j = 0; j < k; ++j) rate[i * k + j] = m.counts[i * k + j] / total;
  }
  auto affinity = [&](int i, int j) { return 0.5 * (rate[i * k + j] + rate[j * k + i]); };
  std::vector<std::vector<int>> clusters(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) clusters[i] = {i};
  const size_t max_size = static_cast<size_t>((k + num_groups - 1) / num_groups);
  while (static_cast<int>(clusters.size()) > num_groups) {
    // Candidates: merges within max_size, or else those of the smallest size.
    bool any = false;
    size_t smallest = std::numeric_limits<size_t>::max();
    for (size_t a = 0; a < clusters.size(); ++a)
      for (size_t b = a + 1; b < clusters.size(); ++b) {
        const size_t size = clusters[a].size() + clusters[b].size();
        any |= size <= max_size;
        smallest = std::min(smallest, size);
      }
    const size_t limit = any ? max_size : smallest;
    size_t best_a = 0, best_b = 1;
    double best = -std::numeric_limits<double>::infinity();
    for (size_t a = 0; a < clusters.size(); ++a) {
      for (size_t b = a + 1; b < clusters.size(); ++b) {
        if (clusters[a].size() + clusters[b].size() > limit) continue;
        double sum = 0;
        for (int i : clusters[a])
          for (int j : clusters[b]) sum += affinity(i, j);
        const double mean = sum / static_cast<double>(clusters[a].size() * clusters[b].size());
        if (mean > best) {
          best = mean;
          best_a = a;
          best_b = b;
        }
      }
    }
    clusters[best_a].insert(clusters[best_a].end(), clusters[best_b].begin(),
                            clusters[best_b].end());
    clusters.erase(clusters.begin() + static_cast<std::ptrdiff_t>(best_b));
  }
  // Clusters keep the order of their smallest class (merges append to the lower id).
  std::vector<int32_t> group(static_cast<size_t>(k));
  for (size_t g = 0; g < clusters.size(); ++g)
    for (int c : clusters[g]) group[static_cast<size_t>(c)] = static_cast<int32_t>(g);
  return group;
}

}  // namespace vmoe
