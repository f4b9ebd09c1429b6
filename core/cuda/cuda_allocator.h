// A caching device allocator: freed blocks go back to a free list keyed by
// their rounded size and are reused, so after the first training step the
// step loop never calls cudaMalloc (which synchronises the device). Sizes
// round up to 512 bytes below 1 MiB and to 1/8-octave steps above, so
// reuse wastes at most ~12%. Not thread-safe: one allocator per backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

namespace vmoe {

class CudaAllocator {
 public:
  CudaAllocator() = default;
  ~CudaAllocator();  // returns every block to the device
  CudaAllocator(const CudaAllocator&) = delete;
  CudaAllocator& operator=(const CudaAllocator&) = delete;

  void* allocate(size_t bytes);
  void deallocate(void* ptr);
  // Frees the cached (unused) blocks, e.g. before a large allocation fails.
  void release_cached();

  static size_t round_size(size_t bytes);
  int64_t device_mallocs() const { return mallocs_; }  // cudaMalloc calls so far
  size_t bytes_in_use() const { return in_use_; }
  size_t bytes_cached() const { return cached_; }

 private:
  std::multimap<size_t, void*> free_;         // rounded size -> cached block
  std::unordered_map<void*, size_t> sizes_;  // every live or cached block
  int64_t mallocs_ = 0;
  size_t in_use_ = 0, cached_ = 0;
};

}  // namespace vmoe
