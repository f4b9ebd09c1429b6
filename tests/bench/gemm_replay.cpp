#include "tests/bench/gemm_replay.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <utility>

namespace vmoe::bench {

ColdArena::ColdArena(vmoe::Backend& be) : arena_(be) {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);  // 0 or -1 where unknown
  const int64_t bytes = std::max<int64_t>(int64_t{256} << 20, l3 > 0 ? 8 * int64_t{l3} : 0);
  arena_.resize({bytes / int64_t{sizeof(float)}});
  be.fill(arena_.data(), arena_.size(), 0.25f);  // mapped now, not in the timing
}

float* ColdArena::take(int64_t elements) {
  elements = (elements + 15) / 16 * 16;  // 64-byte aligned places
  if (next_ + elements > arena_.size()) next_ = 0;
  float* p = arena_.data() + next_;
  next_ += elements;
  return p;
}

namespace {

// Elements of a call's operands A, B and C (row-major, with their leading
// dimensions).
int64_t a_elements(const vmoe::GemmShape& g) {
  return int64_t(g.ta == vmoe::Trans::kNo ? g.m : g.k) * g.lda;
}
int64_t b_elements(const vmoe::GemmShape& g) {
  return int64_t(g.tb == vmoe::Trans::kNo ? g.k : g.n) * g.ldb;
}
int64_t c_elements(const vmoe::GemmShape& g) {
  return int64_t(g.m) * g.ldc;
}

// Runs `calls` once with OpenBLAS on buffers a, b, c (large enough for each),
// or, with `cold`, on operands taken from it.
void run_gemms(const std::vector<vmoe::GemmShape>& calls, const float* a, const float* b, float* c,
               ColdArena* cold = nullptr) {
  auto trans = [](vmoe::Trans t) { return t == vmoe::Trans::kYes ? CblasTrans : CblasNoTrans; };
  for (const vmoe::GemmShape& g : calls) {
    if (cold != nullptr) {
      a = cold->take(a_elements(g));
      b = cold->take(b_elements(g));
      c = cold->take(c_elements(g));
    }
    cblas_sgemm(CblasRowMajor, trans(g.ta), trans(g.tb), g.m, g.n, g.k, 1.0f, a, g.lda, b, g.ldb,
                g.beta, c, g.ldc);
  }
}

// Seconds per call of `once`, repeated for at least min_seconds and 3 calls.
template <typename Once>
double seconds_per_run(double min_seconds, Once once) {
  int reps = 0;
  const auto start = std::chrono::steady_clock::now();
  double seconds = 0;
  while (seconds < min_seconds || reps < 3) {
    once();
    ++reps;
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return seconds / reps;
}

double gemm_flops(const vmoe::GemmShape& g) {
  return 2.0 * g.m * g.n * g.k;
}

// One line per distinct GEMM shape of the steps: calls, share of the GEMM
// FLOPs, the rate OpenBLAS reaches on it alone (hot operands), on operands
// from DRAM (cold) and the rate it reached in the steps (where the step's
// GEMMs lose time).
void print_gemm_shapes(const std::vector<vmoe::GemmShape>& calls, const float* a, const float* b,
                       float* c, ColdArena& cold) {
  using vmoe::Trans;
  std::map<std::tuple<int, int, int, int, int>, std::vector<vmoe::GemmShape>> groups;
  double total_flops = 0;
  for (const vmoe::GemmShape& g : calls) {
    groups[{int(g.ta), int(g.tb), g.m, g.n, g.k}].push_back(g);
    total_flops += gemm_flops(g);
  }
  double total_seconds = 0;
  std::vector<std::pair<double, std::string>> lines;
  for (const auto& [key, group] : groups) {
    const double seconds = seconds_per_run(0.05, [&] { run_gemms(group, a, b, c); });
    const double cold_seconds =
        seconds_per_run(0.05, [&] { run_gemms(group, nullptr, nullptr, nullptr, &cold); });
    double in_step = 0;
    for (const vmoe::GemmShape& g : group) in_step += g.seconds;
    const vmoe::GemmShape& g = group.front();
    const double flops = gemm_flops(g) * group.size();
    total_seconds += in_step;
    char line[240];
    std::snprintf(line, sizeof line,
                  "gemm %c%c m=%d n=%d k=%d calls=%zu flops=%.1f%% GFLOP/s=%.1f cold=%.1f "
                  "in_step=%.1f",
                  g.ta == Trans::kYes ? 'T' : 'N', g.tb == Trans::kYes ? 'T' : 'N', g.m, g.n, g.k,
                  group.size(), 100 * flops / total_flops, flops / seconds / 1e9,
                  flops / cold_seconds / 1e9, flops / in_step / 1e9);
    lines.push_back({in_step, line});
  }
  std::sort(lines.rbegin(), lines.rend());
  for (const auto& [seconds, line] : lines)
    std::printf("%s time=%.1f%%\n", line.c_str(), 100 * seconds / total_seconds);
}

void grow(std::vector<float>& v, size_t n, float value) {
  if (v.size() < n) v.assign(n, value);
}

}  // namespace

GemmReplay::Times GemmReplay::run(const std::vector<vmoe::GemmShape>& calls, size_t warm) {
  const double flops = prepare(calls);
  run_gemms({calls.begin(), calls.begin() + std::min(warm, calls.size())}, a_.data(), b_.data(),
            c_.data());
  auto seconds = [&](ColdArena* cold) {
    const auto start = std::chrono::steady_clock::now();
    run_gemms(calls, a_.data(), b_.data(), c_.data(), cold);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const double hot = seconds(nullptr);
  return {flops, hot, seconds(&cold_)};
}

void GemmReplay::print_shapes(const std::vector<vmoe::GemmShape>& calls) {
  prepare(calls);
  print_gemm_shapes(calls, a_.data(), b_.data(), c_.data(), cold_);
}

double GemmReplay::prepare(const std::vector<vmoe::GemmShape>& calls) {
  double flops = 0;
  for (const vmoe::GemmShape& g : calls) {
    grow(a_, size_t(a_elements(g)), 0.5f);
    grow(b_, size_t(b_elements(g)), 0.25f);
    grow(c_, size_t(c_elements(g)), 0.0f);
    flops += gemm_flops(g);
  }
  return flops;
}

}  // namespace vmoe::bench
