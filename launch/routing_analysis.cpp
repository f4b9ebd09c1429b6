#include "launch/routing_analysis.h"

#include <algorithm>
#include <filesystem>

#include "core/check.h"
#include "launch/metrics_log.h"
#include "parallel/moe_model.h"

namespace vmoe {

RoutingAnalysis::RoutingAnalysis(ViT& model, int group_size, int64_t classes)
    : classes_(classes), group_size_(group_size) {
  for (const NamedRouter& r : named_routers_of(model)) {
    routers_.push_back(r.router);
    names_.push_back(r.name);
  }
}

void RoutingAnalysis::add(Backend& be, const int32_t* labels, const uint8_t* mask, int64_t rows,
                          const int32_t* superclass) {
  if (labels == nullptr) return;  // multi-label data: no class rows
  if (counts_.empty()) counts_.resize(routers_.size());
  for (size_t r = 0; r < routers_.size(); ++r) {
    const Router& router = *routers_[r];
    const RoutingShape& s = router.shape();
    const int64_t items = s.groups * s.items;
    const int64_t per_image = s.items / group_size_;
    VMOE_ASSERT(per_image * group_size_ == s.items && items == rows * per_image);
    std::vector<int64_t>& counts = counts_[r];
    counts.resize(static_cast<size_t>(classes_ * (s.experts + 1)), 0);
    expert_.resize(static_cast<size_t>(items * s.k));
    slot_.resize(expert_.size());
    be.copy_to_host(expert_.data(), router.expert(), expert_.size() * sizeof(int32_t));
    be.copy_to_host(slot_.data(), router.slot(), slot_.size() * sizeof(int32_t));
    for (int64_t i = 0; i < items; ++i) {
      const int64_t image = i / per_image;
      if (mask != nullptr && !mask[image]) continue;
      const int64_t c = labels[image];
      VMOE_ASSERT(c >= 0 && c < classes_);
      for (int j = 0; j < s.k; ++j) {
        const size_t at = static_cast<size_t>(i * s.k + j);
        const int64_t column = slot_[at] >= 0 ? expert_[at] : s.experts;
        ++counts[static_cast<size_t>(c * (s.experts + 1) + column)];
      }
    }
    if (superclass != nullptr && names_[r] == "image_router") {
      // Choices are sorted by gate: choice 0 is the top-1 expert.
      for (int64_t i = 0; i < rows; ++i) {
        if (mask != nullptr && !mask[i]) continue;
        const int64_t sc = superclass[i];
        VMOE_ASSERT(sc >= 0);
        const size_t need = static_cast<size_t>((sc + 1) * s.experts);
        if (superclass_confusion_.size() < need) superclass_confusion_.resize(need, 0);
        ++superclass_confusion_[static_cast<size_t>(sc * s.experts + expert_[static_cast<size_t>(i * s.k)])];
      }
    }
  }
}

void RoutingAnalysis::reduce(Communicator& world) {
  // Every rank has the same routers; a rank that saw no labelled batch has no counts yet.
  int64_t have = counts_.empty() ? 0 : 1;
  have = all_reduce_value(world, have, ReduceOp::kMax);
  if (have == 0) return;
  if (counts_.empty()) counts_.resize(routers_.size());
  for (size_t r = 0; r < routers_.size(); ++r) {
    const int64_t size = classes_ * (routers_[r]->shape().experts + 1);
    counts_[r].resize(static_cast<size_t>(size), 0);
    world.all_reduce(counts_[r].data(), size, ReduceOp::kSum);
  }
  int64_t size = static_cast<int64_t>(superclass_confusion_.size());
  size = all_reduce_value(world, size, ReduceOp::kMax);
  superclass_confusion_.resize(static_cast<size_t>(size), 0);
  if (size > 0) world.all_reduce(superclass_confusion_.data(), size, ReduceOp::kSum);
}

void RoutingAnalysis::write(const std::string& dir,
                            const std::vector<std::string>& class_names) const {
  if (counts_.empty()) return;
  VMOE_ASSERT(static_cast<int64_t>(class_names.size()) == classes_);
  std::filesystem::create_directories(dir);
  for (size_t r = 0; r < routers_.size(); ++r) {
    const int experts = routers_[r]->shape().experts;
    std::string csv = "class";
    for (int e = 0; e < experts; ++e) {
      csv += ",e";
      csv += std::to_string(e);
    }
    csv += ",dropped\n";
    for (int64_t c = 0; c < classes_; ++c) {
      const int64_t* row = counts_[r].data() + c * (experts + 1);
      int64_t total = 0;
      for (int e = 0; e <= experts; ++e) total += row[e];
      csv += csv_field(class_names[static_cast<size_t>(c)]);
      for (int e = 0; e <= experts; ++e) {
        char value[32];
        std::snprintf(value, sizeof value, ",%.6f",
                      total > 0 ? static_cast<double>(row[e]) / static_cast<double>(total) : 0.0);
        csv += value;
      }
      csv += "\n";
    }
    write_file_atomically(dir + "/" + names_[r] + ".csv", csv);
  }
  if (!superclass_confusion_.empty()) {
    const int experts = routers_.front()->shape().experts;
    std::string csv = "superclass";
    for (int e = 0; e < experts; ++e) {
      csv += ",e";
      csv += std::to_string(e);
    }
    csv += "\n";
    const size_t rows = superclass_confusion_.size() / static_cast<size_t>(experts);
    for (size_t s = 0; s < rows; ++s) {
      csv += "s";
      csv += std::to_string(s);
      for (int e = 0; e < experts; ++e) {
        csv += ',';
        csv += std::to_string(superclass_confusion_[s * static_cast<size_t>(experts) + static_cast<size_t>(e)]);
      }
      csv += "\n";
    }
    write_file_atomically(dir + "/superclass_confusion.csv", csv);
  }
}

}  // namespace vmoe
