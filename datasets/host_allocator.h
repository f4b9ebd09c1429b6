// Host memory for a batch's pixels: the heap, or memory a backend provides
// (pinned on a GPU, so the copy to the device runs at full speed and beside
// the compute). A stateful allocator for std::vector.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <vector>

#include "core/backend.h"

namespace vmoe {

template <typename T>
struct HostAllocator {
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;

  Backend* backend = nullptr;  // null: the heap

  HostAllocator() = default;
  explicit HostAllocator(Backend* b) : backend(b) {}
  template <typename U>
  HostAllocator(const HostAllocator<U>& other) : backend(other.backend) {}

  T* allocate(size_t n) {
    if (backend != nullptr) return static_cast<T*>(backend->allocate_host(n * sizeof(T)));
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t) {
    if (backend != nullptr) {
      backend->deallocate_host(p);
    } else {
      ::operator delete(p);
    }
  }
  friend bool operator==(const HostAllocator& a, const HostAllocator& b) {
    return a.backend == b.backend;
  }
};

// A batch's 8-bit pixels.
using PixelBuffer = std::vector<uint8_t, HostAllocator<uint8_t>>;

}  // namespace vmoe
