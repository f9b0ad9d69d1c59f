// Shared machinery of the implicit-GEMM convolution kernels (dilated_branches.cu, octave_conv.cu).
//
// A 'same'-padded k×k convolution is the GEMM out[m, o] = Σ_(tap, c) A[m, (tap, c)] · w[o, c, tap] over
// output pixels m. A block owns BM pixels × BN output channels and walks the reduction as (tap, channel
// block of kBK): the A tile is gathered from the strided input (through 0, 1 or 2 rounds of 2×2 average
// pooling for octave convolution, so no pooled tensor is written), the B tile from PyTorch's contiguous
// (O, C, k, k) weight, both into shared memory, and Mma accumulates in fp32: tensor cores (mma.sync via
// WMMA) for fp16/bf16, CUDA-core FMA for fp32 (exact fp32 products, as PyTorch without TF32).
// Per-pixel bookkeeping (batch offset, row, column) is computed once per block into shared memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <stdexcept>

#include "api.h"
#include "check.cuh"

namespace medinfer::cuda::conv {

constexpr int kThreads = 128;  // 4 warps per block
constexpr int kWarps = kThreads / 32;
constexpr int kBK = 32;                       // input channels per reduction step
constexpr int kInvalidRow = -(1 << 28);       // row/column of a pixel outside the tensor: every tap misses
constexpr std::size_t kSmemAlign = 128;       // WMMA wants 32-byte aligned tiles; 128 is safe for all

template <typename T>
struct Num;
template <>
struct Num<float> {
  __device__ static float to_float(float v) { return v; }
  __device__ static float from_float(float v) { return v; }
};
template <>
struct Num<__half> {
  __device__ static float to_float(__half v) { return __half2float(v); }
  __device__ static __half from_float(float v) { return __float2half_rn(v); }
};
template <>
struct Num<__nv_bfloat16> {
  __device__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
};

// Row padding of shared tiles: 8 elements for 16-bit types (WMMA needs ldm % 8 == 0 and keeps rows on
// distinct banks), 4 for fp32.
template <typename T>
constexpr int pad() { return sizeof(T) == 2 ? 8 : 4; }

__host__ __device__ constexpr std::size_t align_up(std::size_t n) { return (n + kSmemAlign - 1) / kSmemAlign * kSmemAlign; }

// A strided NCHW device tensor, element strides.
struct View {
  const void* data;
  std::int64_t sn, sc, sh, sw;
  int H, W;
};

// Per-pixel rows of one block, in shared memory: batch index n, the source's batch offset n·sn, and the
// row/column on the (pooled) grid the convolution runs on; pixels outside the tensor get n = -1 and
// kInvalidRow.
template <int BM>
struct Rows {
  std::int64_t base[BM];
  int n[BM];
  int h[BM];
  int w[BM];

  __device__ void set(int m, bool ok, std::int64_t n_, int h_, int w_, std::int64_t sn) {
    base[m] = ok ? n_ * sn : 0;
    n[m] = ok ? static_cast<int>(n_) : -1;
    h[m] = ok ? h_ : kInvalidRow;
    w[m] = ok ? w_ : kInvalidRow;
  }
  // Rows p0 … p0+BM-1 of the pixels of an N×H×W grid, flattened batch-major.
  __device__ void flat(std::int64_t p0, int N, int H, int W, std::int64_t sn) {
    const std::int64_t hw = static_cast<std::int64_t>(H) * W;
    for (int m = threadIdx.x; m < BM; m += kThreads) {
      const std::int64_t p = p0 + m;
      set(m, p < N * hw, p / hw, static_cast<int>(p / W % H), static_cast<int>(p % W), sn);
    }
  }
};

// The operand tiles of one reduction step.
template <typename T, int BM, int BN>
struct Tiles {
  static constexpr int lda = kBK + pad<T>(), ldb = BN + pad<T>(), ldc = BN + 4;
  T a[BM * lda];
  T b[kBK * ldb];
};

// Mean over the 2×2 window at pooled position (h, w) of the H×W plane p: of the pixels inside the plane, or
// (kNested) of the one-round means of the window's cells inside the once-pooled grid. (h, w) lies on the
// pooled grid, so the window holds at least one pixel or cell.
template <bool kNested, typename T>
__device__ float window_mean(const T* p, std::int64_t sh, std::int64_t sw, int H, int W, int h, int w) {
  const int hc = kNested ? (H + 1) / 2 : H, wc = kNested ? (W + 1) / 2 : W;
  float sum = 0.f;
  int n = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      const int y = 2 * h + a, x = 2 * w + b;
      if (y < hc && x < wc) {
        if constexpr (kNested)
          sum += window_mean<false>(p, sh, sw, H, W, y, x);
        else
          sum += Num<T>::to_float(p[y * sh + x * sw]);
        ++n;
      }
    }
  return sum / static_cast<float>(n);
}

// The plane p (H×W) at (h, w) after `level` ∈ {0, 1, 2} rounds of 2×2 ceil-mode average pooling, 0 off the
// pooled grid (zero padding). Two rounds average the one-round means, as the reference pools the pooled
// tensor; pooled values are rounded to T, as the reference materialises them.
template <typename T>
__device__ float pooled_value(const T* p, std::int64_t sh, std::int64_t sw, int H, int W, int h, int w, int level) {
  const int hp = (H + (1 << level) - 1) >> level, wp = (W + (1 << level) - 1) >> level;
  if (h < 0 || h >= hp || w < 0 || w >= wp) return 0.f;
  if (level == 0) return Num<T>::to_float(p[h * sh + w * sw]);
  const float v = level == 1 ? window_mean<false>(p, sh, sw, H, W, h, w) : window_mean<true>(p, sh, sw, H, W, h, w);
  return Num<T>::to_float(Num<T>::from_float(v));
}

// Accumulates a BM×BN fp32 tile, acc += A (BM×K, row-major, lda) · B (K×BN, row-major, ldb), operands in
// shared memory. Tensor cores through WMMA for 16-bit types: 4 warps tile the block, 16×16×16 fragments.
template <typename T, int BM, int BN>
struct Mma {
  static constexpr int kWarpsM = BM >= 32 ? 2 : 1, kWarpsN = kWarps / kWarpsM;
  static constexpr int kFragM = BM / kWarpsM / 16, kFragN = BN / kWarpsN / 16;
  static_assert(kFragM >= 1 && kFragN >= 1, "tile too small for 16x16 fragments");
  using Acc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;
  Acc acc[kFragM][kFragN];
  int row0, col0;  // this warp's origin in the tile

  __device__ Mma()
      : row0((threadIdx.x / 32 / kWarpsN) * (BM / kWarpsM)), col0((threadIdx.x / 32 % kWarpsN) * (BN / kWarpsN)) {}

  __device__ void zero() {
    for (int i = 0; i < kFragM; ++i)
      for (int j = 0; j < kFragN; ++j) nvcuda::wmma::fill_fragment(acc[i][j], 0.f);
  }
  __device__ void load(const float* c, int ldc) {
    for (int i = 0; i < kFragM; ++i)
      for (int j = 0; j < kFragN; ++j)
        nvcuda::wmma::load_matrix_sync(acc[i][j], c + (row0 + 16 * i) * ldc + col0 + 16 * j, ldc,
                                       nvcuda::wmma::mem_row_major);
  }
  __device__ void store(float* c, int ldc) const {
    for (int i = 0; i < kFragM; ++i)
      for (int j = 0; j < kFragN; ++j)
        nvcuda::wmma::store_matrix_sync(c + (row0 + 16 * i) * ldc + col0 + 16 * j, acc[i][j], ldc,
                                        nvcuda::wmma::mem_row_major);
  }
  __device__ void mma(const T* a, int lda, const T* b, int ldb, int k_size) {
    using namespace nvcuda;
    for (int k = 0; k < k_size; k += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[kFragM];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[kFragN];
      for (int i = 0; i < kFragM; ++i) wmma::load_matrix_sync(fa[i], a + (row0 + 16 * i) * lda + k, lda);
      for (int j = 0; j < kFragN; ++j) wmma::load_matrix_sync(fb[j], b + k * ldb + col0 + 16 * j, ldb);
      for (int i = 0; i < kFragM; ++i)
        for (int j = 0; j < kFragN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  }
};

// fp32: each thread owns a TM×TN register block of the tile and accumulates with FMA.
template <int BM, int BN>
struct Mma<float, BM, BN> {
  static constexpr int kOut = BM * BN / kThreads, TN = kOut >= 32 ? 8 : 4, TM = kOut / TN, kGroupsN = BN / TN;
  static_assert(TM * TN * kThreads == BM * BN, "tile does not split evenly over the threads");
  float acc[TM][TN];
  int row0, col0;

  __device__ Mma() : row0((threadIdx.x / kGroupsN) * TM), col0((threadIdx.x % kGroupsN) * TN) {}

  __device__ void zero() {
    for (int i = 0; i < TM; ++i)
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
  }
  __device__ void load(const float* c, int ldc) {
    for (int i = 0; i < TM; ++i)
      for (int j = 0; j < TN; ++j) acc[i][j] = c[(row0 + i) * ldc + col0 + j];
  }
  __device__ void store(float* c, int ldc) const {
    for (int i = 0; i < TM; ++i)
      for (int j = 0; j < TN; ++j) c[(row0 + i) * ldc + col0 + j] = acc[i][j];
  }
  __device__ void mma(const float* a, int lda, const float* b, int ldb, int k_size) {
    for (int k = 0; k < k_size; ++k) {
      float av[TM], bv[TN];
      for (int i = 0; i < TM; ++i) av[i] = a[(row0 + i) * lda + k];
      for (int j = 0; j < TN; ++j) bv[j] = b[k * ldb + col0 + j];
      for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  }
};

// acc += the convolution of `src` (read through `level` rounds of pooling, dilation `dil`, k×k taps with
// padding dil·(k/2)) with w[o0 : o0+BN] for the block's rows. w is (O, C, k, k), contiguous or (w_cl)
// channels-last. Starts and ends with all threads synchronised; `tiles` and `rows` are shared memory.
template <typename T, int BM, int BN>
__device__ void conv_accumulate(Mma<T, BM, BN>& acc, Tiles<T, BM, BN>& tiles, const Rows<BM>& rows, const View& src,
                                int C, int level, int ks, int dil, const T* w, bool w_cl, int O, int o0) {
  using Tl = Tiles<T, BM, BN>;
  const T* x = static_cast<const T*>(src.data);
  const int kk = ks * ks;
  for (int tap = 0; tap < kk; ++tap) {
    const int dy = (tap / ks - ks / 2) * dil, dx = (tap % ks - ks / 2) * dil;
    for (int c0 = 0; c0 < C; c0 += kBK) {
      // Pixel index fastest: neighbouring threads read neighbouring columns of an NCHW plane.
      for (int i = threadIdx.x; i < BM * kBK; i += kThreads) {
        const int m = i % BM, c = c0 + i / BM;
        const float v = c < C ? pooled_value(x + rows.base[m] + c * src.sc, src.sh, src.sw, src.H, src.W,
                                             rows.h[m] + dy, rows.w[m] + dx, level)
                              : 0.f;
        tiles.a[m * Tl::lda + i / BM] = Num<T>::from_float(v);
      }
      // Channel index fastest: w[o, c, tap] and w[o, c + 1, tap] are neighbours (channels-last) or k² apart.
      for (int i = threadIdx.x; i < kBK * BN; i += kThreads) {
        const int k = i % kBK, o = o0 + i / kBK, c = c0 + k;
        const std::int64_t at = static_cast<std::int64_t>(o) * C * kk + (w_cl ? tap * C + c : c * kk + tap);
        tiles.b[k * Tl::ldb + i / kBK] = c < C && o < O ? w[at] : Num<T>::from_float(0.f);
      }
      __syncthreads();
      acc.mma(tiles.a, Tl::lda, tiles.b, Tl::ldb, kBK);
      __syncthreads();
    }
  }
}

// ---- Host side -------------------------------------------------------------------------------------------

inline View view(const Tensor4& t) {
  return {reinterpret_cast<const void*>(t.data), t.stride[0], t.stride[1], t.stride[2], t.stride[3],
          static_cast<int>(t.size[2]), static_cast<int>(t.size[3])};
}

// Calls f with a value of the element type named by t.
template <typename F>
void dispatch_float(FloatType t, F&& f) {
  switch (t) {
    case FloatType::kFloat32: return f(float{});
    case FloatType::kFloat16: return f(__half{});
    case FloatType::kBFloat16: return f(__nv_bfloat16{});
  }
  throw std::invalid_argument("unknown float type");
}

// Launches kernel<<<grid, kThreads, smem, stream>>>(params), raising the dynamic shared-memory limit first
// when the block needs more than the default 48 KB.
template <typename Params>
void launch(void (*kernel)(Params), dim3 grid, std::size_t smem, std::uintptr_t stream, const Params& params,
            const char* what) {
  if (grid.x == 0 || grid.y == 0) return;
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), what);
  kernel<<<grid, kThreads, smem, reinterpret_cast<cudaStream_t>(stream)>>>(params);
  check(cudaGetLastError(), what);
}

}  // namespace medinfer::cuda::conv
