// The CPU backend's element-wise loops (core/cpu/cpu_loops.h), timed against
// a plain FMA loop over the same bytes, or (--check) their outputs hashed.
//
//   cpu_loops_bench            elements/ns of each loop, and the share of the
//                              FMA loop's rate it reaches; exits 1 if a loop
//                              falls under its floor (a sign it went scalar)
//   cpu_loops_bench --check    one hash per loop over fixed inputs, with tails
//                              (the test compares builds for each x86-64 level)
//
// Built once with run-time dispatch and once per x86-64 level
// (cpu_loops_bench_v2, _v3, _v4), so each copy can be timed and compared.
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/cpu/cpu_isa.h"
#include "core/cpu/cpu_loops.h"

using namespace vmoe;

namespace {

struct Inputs {
  std::vector<float> a, b, c, d, e, zero;
  explicit Inputs(size_t n) : a(n), b(n), c(n), d(n), e(n), zero(n) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    auto next = [&] {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      return static_cast<float>(static_cast<int32_t>(s >> 33) % 100000) * 4e-5f;  // [-4, 4]
    };
    for (size_t i = 0; i < n; ++i) a[i] = next(), b[i] = next(), c[i] = next(), d[i] = next();
    for (size_t i = 0; i < n; ++i) e[i] = std::fabs(next());  // Adam's v: not negative
  }
};

uint64_t fnv(const void* p, size_t bytes, uint64_t h = 1469598103934665603ull) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

// One loop on rows x cols elements; `run` may modify the inputs.
struct Loop {
  const char* name;
  // Least share of the FMA loop's elements/ns: about a third of what the
  // vectorised loop reaches at AVX2 or AVX-512, several times what scalar code
  // does (x86-64-v2's copy, where fmaf is a libm call, shows that).
  double floor;
  std::function<void(Inputs&, int64_t rows, int cols)> run;
  std::function<uint64_t(const Inputs&, int64_t n)> hash = [](const Inputs& in, int64_t n) {
    return fnv(in.b.data(), n * 4, fnv(in.a.data(), n * 4, fnv(in.c.data(), n * 4)));
  };
};

std::vector<Loop> loops() {
  auto stats = std::make_shared<std::vector<float>>(1 << 17);
  return {
      {"fma_reference", 1.0,
       [](Inputs& in, int64_t r, int c) {
         cpu_loops::axpy(r * c, 0.5f, in.a.data(), in.b.data());
       }},
      {"bias_gelu", 0.03,
       [](Inputs& in, int64_t r, int c) {
         // A zero bias keeps a in [-4, 4] over the repeats, as activations are.
         cpu_loops::bias_gelu(r, c, in.zero.data(), in.a.data(), in.b.data());
       }},
      {"gelu_backward", 0.15,  // a multiply: the derivative comes from bias_gelu
       [](Inputs& in, int64_t r, int c) {
         cpu_loops::gelu_backward(r * c, in.a.data(), in.c.data(), in.b.data());
       }},
      {"bias_grad", 0.15,  // sums of rows: each row adds into the same c sums
       [](Inputs& in, int64_t r, int c) { cpu_loops::bias_grad(r, c, in.a.data(), in.e.data()); }},
      {"softmax_forward", 0.05,
       [](Inputs& in, int64_t r, int c) {
         cpu_loops::softmax_forward(r, c, c, 0.125f, in.a.data());
       }},
      {"softmax_backward", 0.15,
       [](Inputs& in, int64_t r, int c) {
         cpu_loops::softmax_backward(r, c, c, 0.125f, in.c.data(), in.b.data());
       }},
      // Attention's rows over 4 x 4 patches and a class token: T = 17.
      {"softmax_forward_T17", 0.03,
       [](Inputs& in, int64_t r, int c) {
         cpu_loops::softmax_forward(r * c / 17, 17, 17, 0.125f, in.a.data());
       }},
      {"softmax_backward_T17", 0.03,
       [](Inputs& in, int64_t r, int c) {
         cpu_loops::softmax_backward(r * c / 17, 17, 17, 0.125f, in.c.data(), in.b.data());
       }},
      {"layernorm_forward", 0.15,
       [stats](Inputs& in, int64_t r, int c) {
         cpu_loops::layernorm_forward(r, c, 1e-6f, in.a.data(), in.c.data(), in.d.data(),
                                      in.b.data(), stats->data(), stats->data() + r);
       }},
      {"add_layernorm_forward", 0.15,
       [stats](Inputs& in, int64_t r, int c) {
         cpu_loops::add_layernorm_forward(r, c, 1e-6f, in.d.data(), in.a.data(), in.c.data(),
                                          in.zero.data(), in.b.data(), stats->data(),
                                          stats->data() + r);
       }},
      {"layernorm_backward", 0.05,
       [stats](Inputs& in, int64_t r, int c) {
         cpu_loops::layernorm_forward(r, c, 1e-6f, in.a.data(), in.c.data(), in.d.data(),
                                      in.b.data(), stats->data(), stats->data() + r);
         cpu_loops::layernorm_backward(r, c, in.a.data(), in.c.data(), stats->data(),
                                       stats->data() + r, in.d.data(), in.b.data(), in.e.data(),
                                       in.e.data() + c);
       }},
      {"adam_update", 0.05,
       [](Inputs& in, int64_t r, int c) {
         const AdamParams a =
             adam_params(update_scalars(1e-3, 0.9f, 0.999f, 7), 0.9f, 0.999f, 1e-8f, 1e-4f);
         cpu_loops::adam_update(r * c, a, in.a.data(), in.b.data(), in.c.data(), in.e.data());
       }},
      {"moe_combine_backward", 0.15,
       [](Inputs& in, int64_t r, int c) {
         // Each item to its own buffer row, gates from c; dgate into e.
         std::vector<int32_t> row(r);
         for (int64_t i = 0; i < r; ++i) row[i] = static_cast<int32_t>(i);
         cpu_loops::moe_combine_backward(r, 1, 1, c, in.a.data(), in.c.data(), row.data(),
                                         in.d.data(), in.b.data(), in.e.data());
       }},
      {"philox_words", 0.02,  // the router noise's random bits: 32-bit products
       [](Inputs& in, int64_t r, int c) {
         cpu_loops::philox_words(r * c, 11, 4, 1000, reinterpret_cast<uint32_t*>(in.b.data()),
                                 reinterpret_cast<uint32_t*>(in.c.data()));
       }},
      {"sum_squares", 0.15,
       [](Inputs& in, int64_t r, int c) {
         double out = 0;
         cpu_loops::sum_squares(r * c, in.a.data(), &out);
         in.b[0] = static_cast<float>(out);
       }},
  };
}

int check() {
  // Shapes with tails at every vector width: 1, 15, 17, 100 and 768 columns;
  // 37 rows of 17 and 32: whole tiles of short rows and rows past them.
  const int shapes[][2] = {{3, 1}, {5, 15}, {4, 17}, {6, 100}, {2, 768}, {37, 17}, {37, 32}};
  for (const Loop& loop : loops()) {
    uint64_t h = 1469598103934665603ull;
    for (const auto& s : shapes) {
      Inputs in(static_cast<size_t>(s[0]) * s[1] + 1024);
      loop.run(in, s[0], s[1]);
      h = fnv(&h, sizeof h, loop.hash(in, int64_t{s[0]} * s[1]));
      h = fnv(in.e.data(), in.e.size() * 4, h);
    }
    std::printf("%-20s %016" PRIx64 "\n", loop.name, h);
  }
  return 0;
}

int bench() {
  const int64_t rows = 256;
  const int cols = 768;
  Inputs in(rows * cols + 4096);
  std::printf("cpu_loops_bench: loops compiled for %s; this CPU: %s; %lld x %d elements\n",
              cpu_loops_isa(), cpu_isa_level(), static_cast<long long>(rows), cols);
  double reference = 0;
  bool ok = true;
  for (const Loop& loop : loops()) {
    double best = 1e30;
    for (int rep = 0; rep < 7; ++rep) {
      Inputs fresh = in;
      const auto t0 = std::chrono::steady_clock::now();
      for (int it = 0; it < 10; ++it) loop.run(fresh, rows, cols);
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double per_ns = 10.0 * rows * cols / (best * 1e9);
    if (reference == 0) reference = per_ns;
    const double share = per_ns / reference;
    const bool below = share < loop.floor;
    ok &= !below;
    std::printf("  %-20s %7.3f elements/ns  %5.1f%% of the FMA loop (floor %4.1f%%)%s\n", loop.name,
                per_ns, 100 * share, 100 * loop.floor, below ? "  BELOW FLOOR" : "");
  }
  std::printf("cpu_loops_bench: %s\n",
              ok ? "every loop above its floor" : "a loop is below its floor");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--check") == 0) return check();
  return bench();
}
