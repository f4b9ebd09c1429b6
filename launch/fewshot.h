// Few-shot linear evaluation, as big_vision's fewshot_lsr: frozen pre-logit
// features; for each class the first `shots` examples of a seeded
// permutation of the training split; features standardised with the
// few-shot set's mean and std (+1e-5) and extended by a constant column of
// 100 (an almost unregularised bias); targets 2·onehot − 1; ridge regression
// (core/ridge_regression.h); accuracy of the arg-max on the test split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmoe {

struct FewShotSettings {
  std::vector<int> shots = {1, 5, 10, 25};
  int seeds = 3;                  // permutations 0..seeds-1; mean and std over them
  std::vector<double> l2 = {1024};
};

// "1,5,10,25" -> shots; "1024" or "0.5,2,8" -> l2 values; "sweep" -> 2^-10..2^19
// (the reference's grid). Errors name the flag.
std::vector<int> parse_shots(const std::string& text, const char* flag);
std::vector<double> parse_l2(const std::string& text, const char* flag);

// Rows of the few-shot training set for one seed, class-major: for each class
// c, the first `shots` examples of class c in the order of
// RandomPermutation(N, seed, Stream::kFewShot). The first s rows of each class
// block are the s-shot set, for every s <= shots. Fails, naming the class, if
// a class has fewer than `shots` examples.
std::vector<int64_t> fewshot_rows(const std::vector<int32_t>& labels, int64_t classes, int shots,
                                  uint64_t seed);

// Test accuracy of the ridge classifier fit on (train_x, train_y), for each
// l2. x: [rows, dim] row-major floats; labels in [0, classes).
std::vector<double> fewshot_accuracy(const std::vector<float>& train_x,
                                     const std::vector<int32_t>& train_y,
                                     const std::vector<float>& test_x,
                                     const std::vector<int32_t>& test_y, int64_t dim,
                                     int64_t classes, const std::vector<double>& l2);

}  // namespace vmoe
