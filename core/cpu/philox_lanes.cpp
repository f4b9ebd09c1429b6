// Philox4x32-10 (core/random.h) for many counters at once: the router's
// noise draws one normal per (token, expert) every step, and one counter at
// a time the rounds' 32 x 32 -> 64-bit products cost more than the normals'
// logf and cosf. In 32-bit lanes: each product's high and low halves from
// two even/odd-lane multiplies (vpmuludq), since x86 has no high-half 32-bit
// multiply. Integer arithmetic: the same words as philox4x32, bit for bit.
// On Zen 4: 0.19 words/ns one at a time, 0.52 with AVX2, 0.63 with AVX-512
// (tests/bench/cpu_loops_bench, philox_words).
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_epi32() (initialised
// from itself, by design) as the unused merge source; -Wmaybe-uninitialized
// flags it where they inline.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "core/cpu/cpu_isa.h"
#include "core/cpu/cpu_loops.h"
#include "core/random.h"

namespace vmoe::cpu_loops {
namespace {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kBump0 = 0x9E3779B9u, kBump1 = 0xBB67AE85u;
constexpr int kBlocks = 4;  // vectors in flight

void philox_words_scalar(int64_t n, uint64_t key, uint64_t stream, uint64_t first, uint32_t* w0,
                         uint32_t* w1) {
  for (int64_t i = 0; i < n; ++i) {
    const Philox4 r = philox4x32(first + static_cast<uint64_t>(i), stream, key);
    w0[i] = r.v[0];
    w1[i] = r.v[1];
  }
}

// A block of `lanes` counters whose low words do not wrap (no carry into the
// high word within it): then the high word is the same in every lane.
inline bool no_carry(uint64_t base, int lanes) {
  return static_cast<uint32_t>(base) <= UINT32_MAX - static_cast<uint32_t>(lanes - 1);
}

#if defined(__x86_64__) && defined(__GNUC__)

// hi:lo of m * c in every 32-bit lane: lanes 0, 2, ... from one multiply of
// the even lanes, lanes 1, 3, ... from one of the odd lanes shifted down.
__attribute__((target("avx512f"), always_inline)) inline void mul(__m512i m, __m512i c, __m512i& hi,
                                                                  __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(c, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

__attribute__((target("avx2"), always_inline)) inline void mul(__m256i m, __m256i c, __m256i& hi,
                                                               __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(c, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

__attribute__((target("avx512f"))) void philox_words_avx512(int64_t n, uint64_t key,
                                                            uint64_t stream, uint64_t first,
                                                            uint32_t* w0, uint32_t* w1) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(kMul0));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(kMul1));
  int64_t i = 0;
  for (; i + kBlocks * 16 <= n; i += kBlocks * 16) {
    const uint64_t base = first + static_cast<uint64_t>(i);
    if (!no_carry(base, kBlocks * 16)) {
      philox_words_scalar(kBlocks * 16, key, stream, base, w0 + i, w1 + i);
      continue;
    }
    // kBlocks independent chains of rounds: one alone waits on each
    // multiply's latency.
    __m512i c0[kBlocks], c1[kBlocks], c2[kBlocks], c3[kBlocks];
    for (int b = 0; b < kBlocks; ++b) {
      c0[b] = _mm512_add_epi32(
          _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(base) + 16u * b)), lane);
      c1[b] = _mm512_set1_epi32(static_cast<int>(base >> 32));
      c2[b] = _mm512_set1_epi32(static_cast<int>(stream));
      c3[b] = _mm512_set1_epi32(static_cast<int>(stream >> 32));
    }
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    for (int round = 0; round < 10; ++round) {
      const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
      const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
      for (int b = 0; b < kBlocks; ++b) {
        __m512i h0, l0, h1, l1;
        mul(m0, c0[b], h0, l0);
        mul(m1, c2[b], h1, l1);
        c0[b] = _mm512_xor_si512(_mm512_xor_si512(h1, c1[b]), key0);
        c2[b] = _mm512_xor_si512(_mm512_xor_si512(h0, c3[b]), key1);
        c1[b] = l1;
        c3[b] = l0;
      }
      k0 += kBump0;
      k1 += kBump1;
    }
    for (int b = 0; b < kBlocks; ++b) {
      _mm512_storeu_si512(w0 + i + 16 * b, c0[b]);
      _mm512_storeu_si512(w1 + i + 16 * b, c1[b]);
    }
  }
  philox_words_scalar(n - i, key, stream, first + static_cast<uint64_t>(i), w0 + i, w1 + i);
}

// The AVX-512 body at half the width (intrinsics name their width, so the
// two are written out).
__attribute__((target("avx2"))) void philox_words_avx2(int64_t n, uint64_t key, uint64_t stream,
                                                       uint64_t first, uint32_t* w0, uint32_t* w1) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kMul0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kMul1));
  int64_t i = 0;
  for (; i + kBlocks * 8 <= n; i += kBlocks * 8) {
    const uint64_t base = first + static_cast<uint64_t>(i);
    if (!no_carry(base, kBlocks * 8)) {
      philox_words_scalar(kBlocks * 8, key, stream, base, w0 + i, w1 + i);
      continue;
    }
    __m256i c0[kBlocks], c1[kBlocks], c2[kBlocks], c3[kBlocks];
    for (int b = 0; b < kBlocks; ++b) {
      c0[b] = _mm256_add_epi32(
          _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(base) + 8u * b)), lane);
      c1[b] = _mm256_set1_epi32(static_cast<int>(base >> 32));
      c2[b] = _mm256_set1_epi32(static_cast<int>(stream));
      c3[b] = _mm256_set1_epi32(static_cast<int>(stream >> 32));
    }
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    for (int round = 0; round < 10; ++round) {
      const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
      const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
      for (int b = 0; b < kBlocks; ++b) {
        __m256i h0, l0, h1, l1;
        mul(m0, c0[b], h0, l0);
        mul(m1, c2[b], h1, l1);
        c0[b] = _mm256_xor_si256(_mm256_xor_si256(h1, c1[b]), key0);
        c2[b] = _mm256_xor_si256(_mm256_xor_si256(h0, c3[b]), key1);
        c1[b] = l1;
        c3[b] = l0;
      }
      k0 += kBump0;
      k1 += kBump1;
    }
    for (int b = 0; b < kBlocks; ++b) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0 + i + 8 * b), c0[b]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1 + i + 8 * b), c1[b]);
    }
  }
  philox_words_scalar(n - i, key, stream, first + static_cast<uint64_t>(i), w0 + i, w1 + i);
}

#endif

}  // namespace

void philox_words(int64_t n, uint64_t key, uint64_t stream, uint64_t first, uint32_t* w0,
                  uint32_t* w1) {
#if defined(__x86_64__) && defined(__GNUC__)
  // Dispatching builds ask the CPU; a single-ISA build (VMOE_CPU_DISPATCH
  // off, -march=...) uses what it was compiled for, as its other loops do.
#if VMOE_CPU_CLONED
  static const int width = __builtin_cpu_supports("avx512f") ? 16
                           : __builtin_cpu_supports("avx2")  ? 8
                                                             : 1;
#elif defined(__AVX512F__)
  constexpr int width = 16;
#elif defined(__AVX2__)
  constexpr int width = 8;
#else
  constexpr int width = 1;
#endif
  if (width == 16) return philox_words_avx512(n, key, stream, first, w0, w1);
  if (width == 8) return philox_words_avx2(n, key, stream, first, w0, w1);
#endif
  philox_words_scalar(n, key, stream, first, w0, w1);
}

}  // namespace vmoe::cpu_loops
