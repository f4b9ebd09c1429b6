// Super-classes from a trained model's confusion matrix (Mobile V-MoE): the
// classes a model confuses belong together, so experts specialise on groups
// a dense model already finds hard to separate.
//
// Algorithm: rows of the confusion matrix (label -> prediction counts) are
// normalised to rates R; the affinity of two classes is the symmetric
// confusion A(i, j) = (R(i, j) + R(j, i)) / 2 (i != j), a weighted graph on the
// classes. Average-linkage agglomerative clustering then merges, until
// num_groups clusters remain, the two clusters with the largest mean affinity
// between their members (ties: the lowest cluster ids), among merges that
// keep every cluster within ceil(K / num_groups) classes; only when no such
// merge exists, the best of the smallest merges. Balance matters because each
// expert's capacity assumes a 1/E share of the images. Clusters are numbered
// by their smallest class. Deterministic, no tuning.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmoe {

struct ConfusionMatrix {
  std::vector<std::string> class_names;
  std::vector<int64_t> counts;  // [label * K + prediction]
};

// Reads the confusion.csv that vmoe_train writes.
ConfusionMatrix read_confusion_csv(const std::string& path);

// class_to_group[c] in [0, num_groups).
std::vector<int32_t> cluster_confusion(const ConfusionMatrix& m, int num_groups);

}  // namespace vmoe
