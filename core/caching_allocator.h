// A caching allocator over a backend's system allocator (cudaMalloc, or
// aligned host memory): freed blocks go back to a free list keyed by their
// rounded size and are reused, so after the first training step the step
// loop allocates nothing from the system. On a GPU that keeps cudaMalloc
// (which synchronises the device) out of the step; on the CPU it keeps
// activations from being unmapped and faulted in again (zeroed by the
// kernel) every step. Sizes round up to 512 bytes below 1 MiB and to
// 1/8-octave steps above, so reuse wastes at most ~12%. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace vmoe {

// Where the blocks come from. allocate returns nullptr when that memory is
// exhausted (the cache is then released and the allocation tried again).
struct SystemMemory {
  void* (*allocate)(size_t bytes);
  void (*release)(void* ptr);
  const char* name;  // for errors: "GPU", "host"
};

class CachingAllocator {
 public:
  explicit CachingAllocator(SystemMemory system) : system_(system) {}
  ~CachingAllocator();  // returns every block to the system
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t bytes);  // throws vmoe::Error when the system has no memory left
  void deallocate(void* ptr);
  // Frees the cached (unused) blocks, e.g. before a large allocation fails;
  // a captured graph's temporaries stay.
  void release_cached();

  // Recording a step once and replaying it (a CUDA graph) bakes in the
  // addresses of every block the step touches. While a capture is open,
  // blocks freed (the step's temporaries) are kept for the graph: its
  // replays write them, so they are never handed out again outside a
  // capture; the capture's own allocations reuse them first.
  void begin_capture();
  void end_capture();
  // Whether a block that was live when the capture ended has been freed
  // since (a tensor reallocated, say for a larger evaluation batch): a
  // replay would write freed memory, so the graph must be captured again.
  bool capture_invalidated() const;
  // Drops the graph's claim: its temporaries return to the cache.
  void release_capture();

  static size_t round_size(size_t bytes);
  int64_t system_allocations() const;  // blocks taken from the system so far
  size_t bytes_in_use() const;
  size_t bytes_cached() const;

 private:
  void release_cached_locked();
  // A cached block of `size` from `list`, now in use; null if none.
  void* take(std::multimap<size_t, void*>& list, size_t size);

  const SystemMemory system_;
  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_;        // rounded size -> cached block
  std::unordered_map<void*, size_t> sizes_;  // every live or cached block
  std::multimap<size_t, void*> graph_free_;  // the captured graph's temporaries
  std::unordered_set<void*> graph_live_;     // live at end_capture
  bool capturing_ = false, invalidated_ = false;
  int64_t system_allocations_ = 0;
  size_t in_use_ = 0, cached_ = 0;
};

}  // namespace vmoe
