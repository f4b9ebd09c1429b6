#include "core/caching_allocator.h"

#include "core/check.h"

namespace vmoe {

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  constexpr size_t kSmall = size_t{1} << 20;
  if (bytes <= kSmall) return (bytes + 511) / 512 * 512;
  // Above 1 MiB: the next multiple of 1/8 of the power of two below.
  size_t top = kSmall;
  while (top * 2 <= bytes) top *= 2;
  const size_t step = top / 8;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::take(std::multimap<size_t, void*>& list, size_t size) {
  const auto it = list.find(size);
  if (it == list.end()) return nullptr;
  void* ptr = it->second;
  list.erase(it);
  cached_ -= size;
  in_use_ += size;
  return ptr;
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  // A capture reuses its own freed blocks first.
  if (void* ptr = capturing_ ? take(graph_free_, size) : nullptr) return ptr;
  if (void* ptr = take(free_, size)) return ptr;
  void* ptr = system_.allocate(size);
  if (ptr == nullptr && cached_ > 0) {
    release_cached_locked();
    ptr = system_.allocate(size);
  }
  VMOE_CHECK(ptr != nullptr, "out of ", system_.name, " memory: allocating ", size, " bytes with ",
             in_use_, " bytes in use");
  ++system_allocations_;
  sizes_[ptr] = size;
  in_use_ += size;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = sizes_.find(ptr);
  VMOE_ASSERT(it != sizes_.end());
  in_use_ -= it->second;
  cached_ += it->second;
  if (capturing_) {
    graph_free_.emplace(it->second, ptr);
    return;
  }
  if (graph_live_.erase(ptr) > 0) invalidated_ = true;
  free_.emplace(it->second, ptr);
}

void CachingAllocator::begin_capture() {
  std::lock_guard<std::mutex> lock(mutex_);
  VMOE_CHECK(!capturing_, "a capture is already open");
  VMOE_CHECK(graph_free_.empty() && graph_live_.empty(),
             "release_capture() before capturing again");
  capturing_ = true;
  invalidated_ = false;
}

void CachingAllocator::end_capture() {
  std::lock_guard<std::mutex> lock(mutex_);
  VMOE_CHECK(capturing_, "end_capture without begin_capture");
  capturing_ = false;
  std::unordered_set<void*> cached;
  for (const auto* list : {&free_, &graph_free_})
    for (const auto& [size, ptr] : *list) cached.insert(ptr);
  for (const auto& [ptr, size] : sizes_)
    if (cached.count(ptr) == 0) graph_live_.insert(ptr);
}

bool CachingAllocator::capture_invalidated() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return invalidated_;
}

void CachingAllocator::release_capture() {
  std::lock_guard<std::mutex> lock(mutex_);
  VMOE_CHECK(!capturing_, "release_capture while capturing");
  free_.insert(graph_free_.begin(), graph_free_.end());
  graph_free_.clear();
  graph_live_.clear();
  invalidated_ = false;
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

void CachingAllocator::release_cached_locked() {
  for (const auto& [size, ptr] : free_) {
    system_.release(ptr);
    sizes_.erase(ptr);
    cached_ -= size;
  }
  free_.clear();
}

int64_t CachingAllocator::system_allocations() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return system_allocations_;
}
size_t CachingAllocator::bytes_in_use() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return in_use_;
}
size_t CachingAllocator::bytes_cached() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_;
}

CachingAllocator::~CachingAllocator() {
  for (const auto& [ptr, size] : sizes_) system_.release(ptr);
}

}  // namespace vmoe
