// How a MoE model routes a dataset: for every router, the class × expert
// matrix of routing frequencies (the V-MoE paper's specialisation figure),
// and for the image router its super-class confusion (super-class × top-1
// expert; with the super-class loss, expert e should receive super-class e).
//
// A class's row counts its images' expert choices (k per token, or per image
// for the image router), kept or dropped: frequency of expert e = choices of
// e that got a slot / all choices; the last column is the dropped share.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "core/backend.h"
#include "core/vit.h"
#include "parallel/router.h"

namespace vmoe {

class RoutingAnalysis {
 public:
  // group_size: images per routing group (maps a router's items to images).
  RoutingAnalysis(ViT& model, int group_size, int64_t classes);

  // After a forward of this rank's rows (labels and mask host [rows];
  // superclass host [rows] or null).
  void add(Backend& be, const int32_t* labels, const uint8_t* mask, int64_t rows,
           const int32_t* superclass);
  // Sums the counts over the ranks (collective).
  void reduce(Communicator& world);

  bool empty() const { return routers_.empty(); }
  // dir/<router>.csv for every router, dir/superclass_confusion.csv for the image router.
  void write(const std::string& dir, const std::vector<std::string>& class_names) const;
  // Counts [classes, experts + 1] (last column: dropped) of router i.
  const std::vector<int64_t>& counts(size_t i) const { return counts_[i]; }
  const std::string& router_name(size_t i) const { return names_[i]; }
  size_t num_routers() const { return routers_.size(); }
  // [superclasses, experts] counts of the image router's top-1 choice.
  const std::vector<int64_t>& superclass_confusion() const { return superclass_confusion_; }

 private:
  int64_t classes_;
  int group_size_ = 0;
  std::vector<Router*> routers_;
  std::vector<std::string> names_;
  std::vector<std::vector<int64_t>> counts_;
  std::vector<int64_t> superclass_confusion_;
  std::vector<int32_t> expert_, slot_;  // host copies of one router's choices
};

}  // namespace vmoe
