// Philox known answers and RandomPermutation bijectivity.
#include <gtest/gtest.h>

#include <vector>

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
