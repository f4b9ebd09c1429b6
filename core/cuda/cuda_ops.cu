// CudaBackend: the ViT embedding and pooling. LayerNorm and softmax are in
// cuda_norm_softmax.cu, element-wise ops in cuda_elementwise.cu; losses,
// optimisers and sum_squares in cuda_train_ops.cu.
// Semantics: core/backend.h; each kernel mirrors its loop in
// core/cpu/cpu_loops.cpp. Deterministic: no float atomics.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_column_sums.cuh"
#include "core/cuda/cuda_launch.cuh"
#include "core/cuda/cuda_packs.cuh"
#include "core/math.h"

namespace vmoe {
namespace {

// ---- ViT embedding and pooling ---------------------------------------------------------

// One thread per patch element o = (((b gh + py) gw + px) P + y) (P C) + e.
__global__ void patchify_kernel(int64_t n, int height, int width, int channels, int patch, int gh,
                                int gw, const float* images, float* patches) {
  const int64_t row_len = int64_t{patch} * channels;  // one patch row, contiguous in the image
  VMOE_GRID_LOOP(o, n) {
    const int64_t e = o % row_len;
    const int64_t q = o / row_len;  // ((b gh + py) gw + px) P + y
    const int64_t y = q % patch;
    const int64_t cell = q / patch;  // (b gh + py) gw + px
    const int64_t px = cell % gw, py = (cell / gw) % gh, b = cell / (int64_t{gw} * gh);
    patches[o] = images[((b * height + py * patch + y) * width + px * patch) * channels + e];
  }
}

// One thread per token element o = (b T + t) D + c; t < t0 is the class token.
__global__ void embed_tokens_kernel(int64_t n, int patches, int dim, int t0, const float* proj,
                                    const float* bias, const float* cls, const float* pos,
                                    float* tokens) {
  const int tokens_per_image = patches + t0;
  VMOE_GRID_LOOP(o, n) {
    const int64_t c = o % dim, bt = o / dim;
    const int64_t t = bt % tokens_per_image, b = bt / tokens_per_image;
    tokens[o] = t < t0 ? cls[c] + pos[c]
                       : proj[(b * patches + (t - t0)) * dim + c] + bias[c] + pos[t * dim + c];
  }
}

// dproj[b, i, :] = dtokens[b, t0 + i, :] (overwrite).
__global__ void embed_dproj_kernel(int64_t n, int patches, int dim, int t0, const float* dtokens,
                                   float* dproj) {
  const int tokens_per_image = patches + t0;
  VMOE_GRID_LOOP(o, n) {
    const int64_t c = o % dim, bi = o / dim;
    const int64_t i = bi % patches, b = bi / patches;
    dproj[o] = dtokens[(b * tokens_per_image + t0 + i) * dim + c];
  }
}

// With s[t D + c] = sum_b dtokens[b, t, c]: dpos += s, dcls += s[0, :], and s is
// kept in `sums` for dbias.
struct EmbedAcc {
  float *dpos, *dcls, *sums;
  int dim;
  __device__ void operator()(int64_t c, float s) const {
    dpos[c] += s;
    if (dcls != nullptr && c < dim) dcls[c] += s;
    sums[c] = s;
  }
};

// dbias[c] += sum over patch tokens t >= t0 of sums[t D + c], t in order.
__global__ void embed_dbias_kernel(int dim, int t0, int tokens_per_image, const float* sums,
                                   float* dbias) {
  VMOE_GRID_LOOP(c, dim) {
    float s = 0.0f;
    for (int t = t0; t < tokens_per_image; ++t) s += sums[int64_t{t} * dim + c];
    dbias[c] += s;
  }
}

// out[b, c] = x[b, 0, c], or the mean over tokens summed in order (as the CPU).
__global__ void pool_rows_kernel(int64_t n, int tokens, int dim, bool mean, const float* x,
                                 float* out) {
  VMOE_GRID_LOOP(o, n) {
    const int64_t c = o % dim, b = o / dim;
    const float* xb = x + b * tokens * dim;
    if (!mean) {
      out[o] = xb[c];
      continue;
    }
    float s = 0.0f;
    for (int t = 0; t < tokens; ++t) s += xb[int64_t{t} * dim + c];
    out[o] = s * (1.0f / static_cast<float>(tokens));
  }
}

// dx[b, t, c] += w dout[b, c] for t < rows_per_image (T for mean, 1 for the token).
__global__ void pool_rows_backward_kernel(int64_t n, int tokens, int rows_per_image, int dim,
                                          float w, const float* dout, float* dx) {
  VMOE_GRID_LOOP(o, n) {
    const int64_t c = o % dim, bt = o / dim;
    const int64_t t = bt % rows_per_image, b = bt / rows_per_image;
    float& d = dx[(b * tokens + t) * dim + c];
    d = fmaf(w, dout[b * dim + c], d);
  }
}

// ---- attention heads ---------------------------------------------------------------------

// Block (sbh, chunk): head sbh of the head-major side (HeadsLayout), rows
// [chunk kHeadRows, +kHeadRows) of its `padded`; rows t >= T are the padding.
// The head's offsets are computed once per block (64-bit division per
// element made the first version 10x slower than its memory traffic). A
// thread moves packs of W floats of one row (W = 4: one float4 load and
// store, one 64-bit bf16 store; head_dim divides by W), a batch of them
// loaded before any is stored (VMOE_PACK_BATCH): with one pack per thread,
// or a load after each store, too few bytes were in flight (B/16 on an
// H200: 151 us to pack q, k, v, 188 us to unpack their gradients).
constexpr int kHeadRows = 32;

template <int W>
__global__ void pack_heads_kernel(HeadsLayout l, const float* x, const float* bias, float* y,
                                  uint16_t* y16) {
  const int t0 = static_cast<int>(blockIdx.y) * kHeadRows;
  const float* src = x + l.row_major_base(blockIdx.x);
  const float* b = bias != nullptr ? bias + l.column_base(blockIdx.x) : nullptr;
  const int64_t head = int64_t{blockIdx.x} * l.padded * l.head_dim, width = l.width();
  const int n = min(kHeadRows, l.padded - t0) * l.head_dim / W;  // packs
  VMOE_PACK_BATCH_LOOP(i0, n) {
    Pack<W> v[kPackBatch];
    VMOE_PACK_BATCH(k, i, i0, n) {
      const int t = t0 + static_cast<int>(i) * W / l.head_dim;
      const int c = static_cast<int>(i) * W % l.head_dim;
      for (int q = 0; q < W; ++q) v[k].v[q] = 0.0f;
      if (t < l.tokens) {
        v[k] = load<W>(src + int64_t{t} * width + c, 0);
        if (b != nullptr) {
          const Pack<W> bc = load<W>(b + c, 0);
          for (int q = 0; q < W; ++q) v[k].v[q] += bc.v[q];
        }
      }
    }
    VMOE_PACK_BATCH(k, i, i0, n) {
      const int t = t0 + static_cast<int>(i) * W / l.head_dim;
      const int c = static_cast<int>(i) * W % l.head_dim;
      const int64_t at = (head + int64_t{t} * l.head_dim + c) / W;
      store<W>(y, y16, at, v[k]);  // y null: the bf16 copy alone
    }
  }
}

// With partial (non-null): the block's rows summed per column, in row order,
// through shared memory [kHeadRows, head_dim]: partial[b chunks + chunk,
// column] for the bias gradient's second pass (finish_column_sums).
template <int W>
__global__ void unpack_heads_kernel(HeadsLayout l, const float* y, float* x, uint16_t* x16,
                                    float* partial) {
  extern __shared__ float tile[];  // [kHeadRows][head_dim] when partial is non-null
  const int t0 = static_cast<int>(blockIdx.y) * kHeadRows;
  const int64_t base = l.row_major_base(blockIdx.x), width = l.width();
  const float* src = y + int64_t{blockIdx.x} * l.padded * l.head_dim;
  const int real = min(kHeadRows, l.tokens - t0);
  const int n = real * l.head_dim / W;  // real rows only, packs
  VMOE_PACK_BATCH_LOOP(i0, n) {
    Pack<W> v[kPackBatch];
    VMOE_PACK_BATCH(k, i, i0, n) v[k] = load<W>(src + int64_t{t0} * l.head_dim, i);
    VMOE_PACK_BATCH(k, i, i0, n) {
      const int t = t0 + static_cast<int>(i) * W / l.head_dim;
      const int c = static_cast<int>(i) * W % l.head_dim;
      const int64_t at = (base + int64_t{t} * width + c) / W;
      store<W>(x, x16, at, v[k]);  // x null: the bf16 copy alone
      if (partial != nullptr)
        for (int q = 0; q < W; ++q) tile[(t - t0) * l.head_dim + c + q] = v[k].v[q];
    }
  }
  if (partial == nullptr) return;
  __syncthreads();
  const int64_t b = blockIdx.x / l.heads % l.images;
  float* out = partial + (b * gridDim.y + blockIdx.y) * width + l.column_base(blockIdx.x);
  for (int c = tid(); c < l.head_dim; c += nthreads()) {
    float s = 0.0f;
    for (int r = 0; r < real; ++r) s += tile[r * l.head_dim + c];
    out[c] = s;
  }
}

// 4 when every row of a head starts 16-byte aligned on both sides (and 8 for
// the bf16 copies), else 1.
int heads_pack_width(const HeadsLayout& l, std::initializer_list<const void*> floats,
                     std::initializer_list<const void*> bf16s) {
  return l.head_dim % 4 == 0 ? pack_width(4, floats, bf16s) : 1;
}

// Grid: x over the layout's heads, y over chunks of `rows` rows.
dim3 heads_grid(const char* op, const HeadsLayout& l, int rows) {
  VMOE_CHECK(l.count() < (int64_t{1} << 31) && rows <= 65535 * kHeadRows, op, ": ", l.count(),
             " heads of ", rows, " rows is beyond one launch");
  return dim3(static_cast<unsigned>(l.count()),
              static_cast<unsigned>((rows + kHeadRows - 1) / kHeadRows));
}

}  // namespace

// ---- ViT embedding and pooling ----------------------------------------------------------

// images [B, H, W, C] -> patches [B (H/P) (W/P), P P C], (py, px, c) order.
void CudaBackend::patchify(int64_t batch, int height, int width, int channels, int patch,
                           const float* images, float* patches) {
  const int gh = height / patch, gw = width / patch;
  const int64_t n = batch * gh * gw * patch * patch * channels;
  if (n <= 0) return;
  patchify_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, height, width, channels, patch, gh, gw,
                                                         images, patches);
  VMOE_CUDA_LAUNCH_CHECK();
}

// tokens[b, t0 + i] = proj[b, i] + bias + pos[t0 + i]; tokens[b, 0] = cls + pos[0] if cls.
void CudaBackend::embed_tokens(int64_t batch, int patches, int dim, const float* proj,
                               const float* bias, const float* cls, const float* pos,
                               float* tokens) {
  const int t0 = cls != nullptr ? 1 : 0;
  const int64_t n = batch * (patches + t0) * dim;
  if (n <= 0) return;
  embed_tokens_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, patches, dim, t0, proj, bias, cls,
                                                             pos, tokens);
  VMOE_CUDA_LAUNCH_CHECK();
}

// dproj = patch rows of dtokens (overwrite); dpos, dcls (nullable: no class
// token) and dbias accumulate. One column sum over [batch, T D] gives all three.
void CudaBackend::embed_tokens_backward(int64_t batch, int patches, int dim, const float* dtokens,
                                        float* dproj, float* dbias, float* dcls, float* dpos) {
  const int t0 = dcls != nullptr ? 1 : 0;
  const int tokens_per_image = patches + t0;
  const int64_t cols = int64_t{tokens_per_image} * dim;
  if (batch <= 0 || cols <= 0) return;
  const int64_t n = batch * patches * dim;
  if (n > 0) {
    embed_dproj_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, patches, dim, t0, dtokens, dproj);
    VMOE_CUDA_LAUNCH_CHECK();
  }
  const ColPlan plan = col_plan(batch);
  auto* partial = static_cast<float*>(scratch(sizeof(float) * (plan.chunks + 1) * cols));
  float* sums = partial + plan.chunks * cols;  // [T D] per-column sums over the batch
  column_sums(stream_, partial, plan, batch, cols, RowsOf{dtokens, cols},
              EmbedAcc{dpos, dcls, sums, dim});
  embed_dbias_kernel<<<grid_for(dim), kThreads, 0, stream_>>>(dim, t0, tokens_per_image, sums,
                                                              dbias);
  VMOE_CUDA_LAUNCH_CHECK();
}

// out[b] = x[b, 0] (token pooling) or the mean over the T rows (gap).
void CudaBackend::pool_rows(int64_t batch, int tokens, int dim, bool mean, const float* x,
                            float* out) {
  const int64_t n = batch * dim;
  if (n <= 0) return;
  pool_rows_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, tokens, dim, mean, x, out);
  VMOE_CUDA_LAUNCH_CHECK();
}

// dx[b, 0] += dout[b] (token), or dx[b, t] += dout[b] / T for every t (gap).
void CudaBackend::pool_rows_backward(int64_t batch, int tokens, int dim, bool mean,
                                     const float* dout, float* dx) {
  const float w = mean ? 1.0f / static_cast<float>(tokens) : 1.0f;
  const int rows_per_image = mean ? tokens : 1;
  const int64_t n = batch * rows_per_image * dim;
  if (n <= 0) return;
  pool_rows_backward_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, tokens, rows_per_image, dim,
                                                                   w, dout, dx);
  VMOE_CUDA_LAUNCH_CHECK();
}

// ---- attention heads ----------------------------------------------------------------------

void CudaBackend::pack_heads(int64_t images, int tokens, int padded, int heads, int head_dim,
                             int slabs, const float* x, const float* bias, float* y,
                             uint16_t* y16) {
  const HeadsLayout l{images, tokens, padded, heads, head_dim, slabs};
  if (l.count() <= 0 || padded <= 0 || head_dim <= 0) return;
  const dim3 grid = heads_grid("pack_heads", l, padded);
  if (heads_pack_width(l, {x, bias, y}, {y16}) == 4) {
    pack_heads_kernel<4><<<grid, kThreads, 0, stream_>>>(l, x, bias, y, y16);
  } else {
    pack_heads_kernel<1><<<grid, kThreads, 0, stream_>>>(l, x, bias, y, y16);
  }
  VMOE_CUDA_LAUNCH_CHECK();
}

// dbias: each block sums its rows per column (partial[image chunk, column]),
// then finish_column_sums adds the partials of every image and chunk in order.
void CudaBackend::unpack_heads(int64_t images, int tokens, int padded, int heads, int head_dim,
                               int slabs, const float* y, float* x, uint16_t* x16, float* dbias) {
  const HeadsLayout l{images, tokens, padded, heads, head_dim, slabs};
  if (l.count() <= 0 || tokens <= 0 || head_dim <= 0) return;
  const dim3 grid = heads_grid("unpack_heads", l, tokens);
  const int64_t parts = images * grid.y, width = l.width();
  float* partial =
      dbias != nullptr ? static_cast<float*>(scratch(sizeof(float) * parts * width)) : nullptr;
  const size_t shared = dbias != nullptr ? sizeof(float) * kHeadRows * head_dim : 0;
  VMOE_CHECK(shared <= 48 * 1024, "unpack_heads: head_dim ", head_dim, " is beyond one block");
  if (heads_pack_width(l, {y, x}, {x16}) == 4) {
    unpack_heads_kernel<4><<<grid, kThreads, shared, stream_>>>(l, y, x, x16, partial);
  } else {
    unpack_heads_kernel<1><<<grid, kThreads, shared, stream_>>>(l, y, x, x16, partial);
  }
  VMOE_CUDA_LAUNCH_CHECK();
  if (dbias != nullptr)
    finish_column_sums(stream_, partial, static_cast<int>(parts), width, AddTo{dbias});
}

}  // namespace vmoe
