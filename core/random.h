// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
//
// Every draw is a pure function of (key, stream, counter), so a stream's
// whole state is one counter (trivial to checkpoint), bulk draws can run in
// parallel on any device, and a value depends on its global index, not on
// which rank or thread produced it.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace vmoe {

// Independent streams of one run; the numbers are part of the checkpoint
// format, never renumber them.
enum class Stream : uint64_t {
  kInit = 1,         // parameter initialisation
  kDataOrder = 2,    // per-epoch shuffling of the training set
  kAugment = 3,      // crops and flips
  kRouterNoise = 4,  // noisy gating in MoE routers
  kFewShot = 5,      // few-shot example selection
  kMixup = 6,        // mixup's per-batch Beta draw
  kSynthetic = 7,    // vmoe_synth: labels and pixels of synthetic examples
  kTest = 99,        // unit tests
};

struct Philox4 {
  uint32_t v[4];
};

VMOE_HD Philox4 philox4x32(uint64_t counter, uint64_t stream, uint64_t key) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = 0xD2511F53ull * c0;
    const uint64_t p1 = 0xCD9E8D57ull * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits.
VMOE_HD float uniform01(uint32_t bits) { return static_cast<float>(bits >> 8) * 0x1.0p-24f; }

// Standard normal from two 32-bit words (Box-Muller; the first uniform is in (0, 1]).
VMOE_HD float normal_from_bits(uint32_t a, uint32_t b) {
  const float u1 = static_cast<float>((a >> 8) + 1) * 0x1.0p-24f;
  const float u2 = uniform01(b);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

// Element `index` of the pure sequences (key, stream): what bulk fills use.
VMOE_HD float uniform_at(uint64_t key, uint64_t stream, uint64_t index) {
  return uniform01(philox4x32(index, stream, key).v[0]);
}
VMOE_HD float normal_at(uint64_t key, uint64_t stream, uint64_t index) {
  const Philox4 r = philox4x32(index, stream, key);
  return normal_from_bits(r.v[0], r.v[1]);
}

// The first counter of a draw that starts at `first` after *step earlier
// draws of per_step counters each (step nullable: none; read where the draw
// runs, e.g. the optimiser's device step counter).
VMOE_HD uint64_t first_counter(uint64_t first, const int64_t* step, uint64_t per_step) {
  return step != nullptr ? first + static_cast<uint64_t>(*step) * per_step : first;
}

// A sequential stream for host-side draws: every draw consumes one counter.
class RandomStream {
 public:
  RandomStream() = default;
  RandomStream(uint64_t seed, Stream stream) : key_(seed), stream_(static_cast<uint64_t>(stream)) {}

  uint32_t next_u32() { return philox4x32(counter_++, stream_, key_).v[0]; }
  uint64_t next_u64() {
    const Philox4 r = philox4x32(counter_++, stream_, key_);
    return (static_cast<uint64_t>(r.v[1]) << 32) | r.v[0];
  }
  float uniform() { return uniform01(next_u32()); }
  float normal() {
    const Philox4 r = philox4x32(counter_++, stream_, key_);
    return normal_from_bits(r.v[0], r.v[1]);
  }
  // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < n / 2^64).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next_u64()) * n) >> 64);
  }
  // Reserves `n` counters for a bulk draw and returns the first one; element
  // i of the draw is then *_at(key(), stream(), first + i).
  uint64_t take(uint64_t n) {
    const uint64_t first = counter_;
    counter_ += n;
    return first;
  }

  uint64_t key() const { return key_; }
  uint64_t stream() const { return stream_; }
  uint64_t counter() const { return counter_; }
  void set_counter(uint64_t counter) { counter_ = counter; }

 private:
  uint64_t key_ = 0;
  uint64_t stream_ = 0;
  uint64_t counter_ = 0;
};

// A seeded pseudo-random permutation of [0, n) in O(1) memory: a balanced
// Feistel network on the smallest power of four >= n, with cycle walking.
// Used to shuffle datasets of any size without an index array.
class RandomPermutation {
 public:
  RandomPermutation(uint64_t n, uint64_t key, uint64_t stream) : n_(n), key_(key), stream_(stream) {
    half_bits_ = 1;
    while ((uint64_t{1} << (2 * half_bits_)) < n_) ++half_bits_;
  }
  uint64_t size() const { return n_; }
  uint64_t operator()(uint64_t i) const {
    uint64_t x = i;
    do x = feistel(x);
    while (x >= n_);
    return x;
  }

 private:
  uint64_t feistel(uint64_t x) const {
    const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
    uint64_t left = x >> half_bits_, right = x & mask;
    for (uint64_t round = 0; round < 6; ++round) {
      const Philox4 f = philox4x32(right, stream_ * 8 + round, key_);
      const uint64_t mixed = ((static_cast<uint64_t>(f.v[1]) << 32) | f.v[0]) & mask;
      const uint64_t next = left ^ mixed;
      left = right;
      right = next;
    }
    return (left << half_bits_) | right;
  }
  uint64_t n_, key_, stream_;
  int half_bits_;
};

}  // namespace vmoe
