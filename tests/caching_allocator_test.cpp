// The caching allocator both backends draw from: blocks are reused by size,
// and a captured step's blocks are protected for its replays. And the CPU's
// system memory under it: large blocks on transparent huge pages.
#include "core/caching_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "core/cpu/cpu_backend.h"

namespace vmoe {
namespace {

int64_t g_live = 0;
void* counted_malloc(size_t bytes) {
  ++g_live;
  return std::malloc(bytes);
}
void counted_free(void* ptr) {
  --g_live;
  std::free(ptr);
}
const SystemMemory kCounted{counted_malloc, counted_free, "test"};

TEST(CachingAllocator, ReusesFreedBlocksOfTheSameRoundedSize) {
  {
    CachingAllocator a(kCounted);
    void* p = a.allocate(1000);
    EXPECT_EQ(a.bytes_in_use(), 1024u);
    a.deallocate(p);
    EXPECT_EQ(a.bytes_cached(), 1024u);
    EXPECT_EQ(a.allocate(1024), p);  // same rounded size: the cached block
    EXPECT_EQ(a.system_allocations(), 1);
    void* q = a.allocate(2048);  // another size: a new block
    EXPECT_NE(q, p);
    EXPECT_EQ(a.system_allocations(), 2);
    a.deallocate(q);
    a.release_cached();
    EXPECT_EQ(a.bytes_cached(), 0u);
    EXPECT_EQ(g_live, 1);  // p is still in use
  }
  EXPECT_EQ(g_live, 0);  // the destructor returns everything
}

TEST(CachingAllocator, RoundsToAnEighthOfAnOctaveAboveOneMiB) {
  EXPECT_EQ(CachingAllocator::round_size(0), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::round_size((1 << 20) + 1), (1u << 20) + (1u << 17));
  EXPECT_EQ(CachingAllocator::round_size(3u << 20), 3u << 20);
}

// Stands in for the system running out: fails above a byte budget.
size_t g_budget = 0;
std::map<void*, size_t> g_limited;
void* limited_malloc(size_t bytes) {
  if (bytes > g_budget) return nullptr;
  g_budget -= bytes;
  void* ptr = std::malloc(bytes);
  g_limited[ptr] = bytes;
  return ptr;
}
void limited_free(void* ptr) {
  g_budget += g_limited.at(ptr);
  g_limited.erase(ptr);
  std::free(ptr);
}

TEST(CachingAllocator, ReleasesTheCacheBeforeGivingUp) {
  g_budget = 8192;
  CachingAllocator a({limited_malloc, limited_free, "test"});
  a.deallocate(a.allocate(4096));
  // 4096 bytes are cached, 8192 are asked for: the cache goes, then it fits.
  void* p = a.allocate(8192);
  EXPECT_EQ(a.bytes_cached(), 0u);
  try {
    a.allocate(512);
    FAIL() << "expected out of memory";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("out of test memory"), std::string::npos) << e.what();
  }
  a.deallocate(p);
}

// A captured step: its temporaries stay its own after the capture, and
// freeing a block that was live when it was captured invalidates it.
TEST(CachingAllocator, CaptureKeepsTheGraphsBlocks) {
  CachingAllocator a(kCounted);
  void* persistent = a.allocate(4096);  // e.g. a parameter
  void* warm = a.allocate(8192);        // a temporary of the warm-up step
  a.deallocate(warm);
  a.begin_capture();
  void* t1 = a.allocate(8192);  // the cached block, reused inside the capture
  EXPECT_EQ(t1, warm);
  a.deallocate(t1);
  void* t2 = a.allocate(8192);  // the capture's own freed block again
  EXPECT_EQ(t2, warm);
  a.deallocate(t2);
  void* kept = a.allocate(512);  // allocated in the step and kept (a lazy resize)
  a.end_capture();
  EXPECT_FALSE(a.capture_invalidated());
  // Outside the capture the graph's temporary is not handed out again.
  void* other = a.allocate(8192);
  EXPECT_NE(other, warm);
  a.deallocate(other);  // not a block the graph uses: still valid
  EXPECT_FALSE(a.capture_invalidated());
  // A block the graph may read or write, freed: the graph is stale.
  a.deallocate(kept);
  EXPECT_TRUE(a.capture_invalidated());
  // Released, its temporaries are ordinary cached blocks again.
  a.release_capture();
  EXPECT_FALSE(a.capture_invalidated());
  std::set<void*> got = {a.allocate(8192), a.allocate(8192)};
  EXPECT_EQ(got.count(warm), 1u);
  for (void* p : got) a.deallocate(p);
  a.deallocate(persistent);
  EXPECT_FALSE(a.capture_invalidated());  // no graph any more
}

// The VmFlags line of the mapping that holds `p`, from /proc/self/smaps.
std::string vm_flags_of(const void* p) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t from = 0, to = 0;
    char dash = 0;
    std::istringstream header(line);
    if (header >> std::hex >> from >> dash >> to && dash == '-') {
      inside = from <= at && at < to;  // a mapping's first line: its address range
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line + " ";
    }
  }
  return "";
}

TEST(CpuMemory, LargeBlocksStartOnHugePagesAndAskForThem) {
  CpuBackend be;
  constexpr size_t kHugePage = size_t{2} << 20;
  void* big = be.allocate(3 * kHugePage);
  void* small = be.allocate(4096);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big) % kHugePage, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small) % 64, 0u);
  const std::string flags = vm_flags_of(big);
  be.deallocate(big);
  be.deallocate(small);
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"))
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  ASSERT_FALSE(flags.empty()) << "no mapping in /proc/self/smaps holds the block";
  EXPECT_NE(flags.find(" hg "), std::string::npos) << flags;  // MADV_HUGEPAGE
}

}  // namespace
}  // namespace vmoe
