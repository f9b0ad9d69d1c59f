// Octave convolution, all four paths in one launch (CUDA backend of medinfer.ops.octave_conv; reference:
// medinfer.models.layers.octave_conv).
//
// Blocks come in two kinds, told apart by blockIdx.x. A "high" block owns 16 low-resolution positions and
// the 2×2 quads of y_h pixels above them (64 rows, quad-major): the H→H path is one implicit GEMM over those
// rows, the L→H path one over the 16 low positions only, and the store adds the low tile to all four pixels
// of each quad (nearest upsampling in the store, the crop in its bounds check). A "low" block owns 64 low
// positions and accumulates H→L (x_h read through a 2×2 average) and L→L into one tile. Stride 2 reads every
// input through one more round of pooling. No intermediate tensor is written.
#include <cuda_runtime.h>

#include <stdexcept>

#include "api.h"
#include "check.cuh"
#include "conv_tile.cuh"

namespace medinfer::cuda {

namespace {

using namespace conv;

constexpr int kQuads = 16;        // low positions per high block
constexpr int kBM = 4 * kQuads;   // rows of either block kind
constexpr int kBN = 64;           // output channels per block

struct Params {
  View xh, xl;
  const void *whh, *whl, *wlh, *wll;  // nullptr: path absent
  void *yh, *yl;
  std::int64_t syh[4], syl[4];
  bool w_cl;  // weights channels-last
  int N, CH, CL, OH, OL, H, W, HL, WL, ks, pool;
  int n_high, oblk_h, oblk_l;
};

template <typename T>
struct Layout {
  static constexpr int ldc = kBN + 4;
  std::size_t tiles = 0, rows, lrows, c, cl, bytes;
  __host__ __device__ Layout() {
    rows = tiles + align_up(sizeof(Tiles<T, kBM, kBN>));
    lrows = rows + align_up(sizeof(Rows<kBM>));
    c = lrows + align_up(sizeof(Rows<kQuads>));
    cl = c + align_up(sizeof(float) * kBM * ldc);
    bytes = cl + align_up(sizeof(float) * kQuads * ldc);
  }
};

template <typename T>
__device__ void store(T* y, const std::int64_t (&s)[4], const Rows<kBM>& rows, const float* c, const float* cl,
                      int o0, int O) {
  for (int i = threadIdx.x; i < kBM * kBN; i += kThreads) {
    const int m = i % kBM, j = i / kBM, o = o0 + j;
    if (rows.n[m] < 0 || o >= O) continue;
    const float v = c[m * Layout<T>::ldc + j] + (cl ? cl[(m % kQuads) * Layout<T>::ldc + j] : 0.f);
    y[rows.n[m] * s[0] + o * s[1] + rows.h[m] * s[2] + rows.w[m] * s[3]] = Num<T>::from_float(v);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) octave_conv_kernel(Params p) {
  extern __shared__ __align__(kSmemAlign) unsigned char smem[];
  const Layout<T> lay;
  auto& tiles = *reinterpret_cast<Tiles<T, kBM, kBN>*>(smem + lay.tiles);
  auto& rows = *reinterpret_cast<Rows<kBM>*>(smem + lay.rows);
  float* c = reinterpret_cast<float*>(smem + lay.c);
  const bool high = static_cast<int>(blockIdx.x) < p.n_high;
  const int pid = high ? blockIdx.x : blockIdx.x - p.n_high;
  const int oblk = high ? p.oblk_h : p.oblk_l;
  const std::int64_t tile = pid / oblk;
  const int o0 = (pid % oblk) * kBN;
  const std::int64_t nq = static_cast<std::int64_t>(p.N) * p.HL * p.WL;

  Mma<T, kBM, kBN> acc;
  acc.zero();
  if (high) {
    for (int m = threadIdx.x; m < kBM; m += kThreads) {
      const int quad = m / kQuads;
      const std::int64_t q = tile * kQuads + m % kQuads;
      const int i = 2 * static_cast<int>(q / p.WL % p.HL) + quad / 2, j = 2 * static_cast<int>(q % p.WL) + quad % 2;
      rows.set(m, q < nq && i < p.H && j < p.W, q / (static_cast<std::int64_t>(p.HL) * p.WL), i, j, p.xh.sn);
    }
    __syncthreads();
    conv_accumulate(acc, tiles, rows, p.xh, p.CH, p.pool, p.ks, 1, static_cast<const T*>(p.whh), p.w_cl, p.OH, o0);
    acc.store(c, Layout<T>::ldc);
    float* cl = nullptr;
    if (p.wlh) {
      // The L→H GEMM runs on the 16 low positions only, in the same shared tiles.
      auto& lrows = *reinterpret_cast<Rows<kQuads>*>(smem + lay.lrows);
      auto& ltiles = *reinterpret_cast<Tiles<T, kQuads, kBN>*>(smem + lay.tiles);
      cl = reinterpret_cast<float*>(smem + lay.cl);
      lrows.flat(tile * kQuads, p.N, p.HL, p.WL, p.xl.sn);
      __syncthreads();
      Mma<T, kQuads, kBN> low;
      low.zero();
      conv_accumulate(low, ltiles, lrows, p.xl, p.CL, p.pool, p.ks, 1, static_cast<const T*>(p.wlh), p.w_cl, p.OH,
                      o0);
      low.store(cl, Layout<T>::ldc);
    }
    __syncthreads();
    store(static_cast<T*>(p.yh), p.syh, rows, c, cl, o0, p.OH);
  } else {
    rows.flat(tile * kBM, p.N, p.HL, p.WL, p.xh.sn);
    __syncthreads();
    conv_accumulate(acc, tiles, rows, p.xh, p.CH, p.pool + 1, p.ks, 1, static_cast<const T*>(p.whl), p.w_cl, p.OL,
                    o0);
    if (p.wll) {
      __syncthreads();
      rows.flat(tile * kBM, p.N, p.HL, p.WL, p.xl.sn);  // same pixels, x_l's batch stride
      __syncthreads();
      conv_accumulate(acc, tiles, rows, p.xl, p.CL, p.pool, p.ks, 1, static_cast<const T*>(p.wll), p.w_cl, p.OL,
                      o0);
    }
    acc.store(c, Layout<T>::ldc);
    __syncthreads();
    store(static_cast<T*>(p.yl), p.syl, rows, c, static_cast<const float*>(nullptr), o0, p.OL);
  }
}

}  // namespace

void octave_conv(const OctaveConvArgs& a, std::uintptr_t stream) {
  if (a.kernel_size != 1 && a.kernel_size != 3)
    throw std::invalid_argument("cuda octave_conv: kernel size must be 1 or 3");
  if (a.stride != 1 && a.stride != 2) throw std::invalid_argument("cuda octave_conv: stride must be 1 or 2");
  if (a.w_hh == 0 || a.x_h.data == 0 || a.y_h.data == 0)
    throw std::invalid_argument("cuda octave_conv: x_h, w_hh and y_h are required");
  if ((a.w_hl != 0) != (a.y_l.data != 0))
    throw std::invalid_argument("cuda octave_conv: y_l must be given exactly when w_hl is");
  if ((a.w_lh != 0 || a.w_ll != 0) && a.x_l.data == 0)
    throw std::invalid_argument("cuda octave_conv: the low-to-* paths need x_l");
  if (a.w_ll != 0 && a.w_hl == 0) throw std::invalid_argument("cuda octave_conv: w_ll needs w_hl");
  Params p{};
  p.xh = view(a.x_h);
  p.xl = a.x_l.data ? view(a.x_l) : p.xh;
  p.whh = reinterpret_cast<const void*>(a.w_hh);
  p.whl = reinterpret_cast<const void*>(a.w_hl);
  p.wlh = reinterpret_cast<const void*>(a.w_lh);
  p.wll = reinterpret_cast<const void*>(a.w_ll);
  p.w_cl = a.weights_channels_last;
  p.yh = reinterpret_cast<void*>(a.y_h.data);
  p.yl = reinterpret_cast<void*>(a.y_l.data);
  for (int i = 0; i < 4; ++i) {
    p.syh[i] = a.y_h.stride[i];
    p.syl[i] = a.y_l.stride[i];
  }
  p.N = static_cast<int>(a.x_h.size[0]);
  p.CH = static_cast<int>(a.x_h.size[1]);
  p.CL = a.x_l.data ? static_cast<int>(a.x_l.size[1]) : 0;
  p.OH = static_cast<int>(a.y_h.size[1]);
  p.OL = a.y_l.data ? static_cast<int>(a.y_l.size[1]) : 0;
  p.H = static_cast<int>(a.y_h.size[2]);
  p.W = static_cast<int>(a.y_h.size[3]);
  p.HL = (p.H + 1) / 2;
  p.WL = (p.W + 1) / 2;
  p.ks = a.kernel_size;
  p.pool = a.stride == 2 ? 1 : 0;
  const std::int64_t nq = static_cast<std::int64_t>(p.N) * p.HL * p.WL;
  p.oblk_h = (p.OH + kBN - 1) / kBN;
  p.oblk_l = (p.OL + kBN - 1) / kBN;
  p.n_high = static_cast<int>((nq + kQuads - 1) / kQuads * p.oblk_h);
  const std::int64_t blocks = p.n_high + (nq + kBM - 1) / kBM * p.oblk_l;
  dispatch_float(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch(octave_conv_kernel<T>, dim3(static_cast<unsigned>(blocks)), Layout<T>().bytes, stream, p,
           "octave_conv_kernel launch");
  });
}

}  // namespace medinfer::cuda
