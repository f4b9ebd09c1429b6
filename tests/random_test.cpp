// Philox known answers, its many-lane draws against one at a time, and
// RandomPermutation bijectivity.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/cpu_loops.h"
#include "core/random.h"

namespace vmoe {
namespace {

// Random123's known-answer test for philox4x32-10, counter and key all zero.
TEST(Philox, KnownAnswerZero) {
  const Philox4 r = philox4x32(0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
}

TEST(Philox, DependsOnEveryInput) {
  const Philox4 base = philox4x32(1, 2, 3);
  for (const Philox4 other :
       {philox4x32(2, 2, 3), philox4x32(1, 3, 3), philox4x32(1, 2, 4),
        philox4x32(uint64_t{1} << 32 | 1, 2, 3), philox4x32(1, uint64_t{1} << 32 | 2, 3),
        philox4x32(1, 2, uint64_t{1} << 32 | 3)}) {
    EXPECT_NE(std::vector<uint32_t>(base.v, base.v + 4),
              std::vector<uint32_t>(other.v, other.v + 4));
  }
}

// Many lanes at a time, the same words as one counter at a time: across the
// low word's wrap into the high one (by one lane, by a whole block), at
// lengths with tails at every width.
TEST(Philox, ManyLanesGiveTheOneAtATimeWords) {
  for (const uint64_t first : {uint64_t{0}, uint64_t{0x7FFFFFF0u}, uint64_t{0xFFFFFFF0u},
                               uint64_t{0xFFFFFFFFu}, (uint64_t{7} << 40) + 3}) {
    for (const int64_t n : {1, 7, 8, 15, 16, 17, 100, 1000}) {
      std::vector<uint32_t> w0(n), w1(n);
      cpu_loops::philox_words(n, 0x1234567890abcdefull, 4, first, w0.data(), w1.data());
      for (int64_t i = 0; i < n; ++i) {
        const Philox4 r = philox4x32(first + i, 4, 0x1234567890abcdefull);
        ASSERT_EQ(w0[i], r.v[0]) << "first " << first << " n " << n << " i " << i;
        ASSERT_EQ(w1[i], r.v[1]) << "first " << first << " n " << n << " i " << i;
      }
    }
  }
}

// The router's noise on the CPU: normal_at's values to the bit, past the
// backend's chunks, from a device step counter.
TEST(Random, CpuNoiseIsNormalAtToTheBit) {
  CpuBackend be;
  const int64_t n = 1500, step = 3, per_step = 5000;
  std::vector<float> x(n), want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = x[i] = 0.01f * static_cast<float>(i);
  be.add_normal_noise(n, 0.25f, 11, 4, 100, &step, per_step, x.data());
  for (int64_t i = 0; i < n; ++i) want[i] += 0.25f * normal_at(11, 4, 100 + step * per_step + i);
  EXPECT_EQ(0, std::memcmp(x.data(), want.data(), n * sizeof(float)));
}

TEST(RandomPermutation, IsABijection) {
  for (uint64_t n : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{4}, uint64_t{5},
                     uint64_t{1000}, uint64_t{4096}, (uint64_t{1} << 20) + 3}) {
    const RandomPermutation permutation(n, 42, 7);
    std::vector<bool> seen(n, false);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t x = permutation(i);
      ASSERT_LT(x, n) << "n = " << n;
      ASSERT_FALSE(seen[x]) << "n = " << n << ": " << x << " hit twice";
      seen[x] = true;
    }
  }
}

TEST(RandomPermutation, DependsOnKeyAndStream) {
  const uint64_t n = 1000;
  auto order = [&](uint64_t key, uint64_t stream) {
    const RandomPermutation p(n, key, stream);
    std::vector<uint64_t> out;
    for (uint64_t i = 0; i < n; ++i) out.push_back(p(i));
    return out;
  };
  EXPECT_EQ(order(1, 1), order(1, 1));
  EXPECT_NE(order(1, 1), order(2, 1));
  EXPECT_NE(order(1, 1), order(1, 2));
}

TEST(Random, NormalMoments) {
  RandomStream rng(7, Stream::kTest);
  double s = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal();
    s += z;
    s2 += z * z;
  }
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(s2 / n, 1.0, 0.01);
}

}  // namespace
}  // namespace vmoe
