// Fused multi-branch dilated 3×3 convolution with the DDC epilogue (CUDA backend of
// medinfer.ops.dilated_branches; reference: medinfer.models.layers.dilated_branches / ddc_project_sum).
//
// A block owns a tile of output pixels and runs every branch over it (conv_tile.cuh's implicit GEMM), so the
// branches share the input rows through L1/L2. Without the epilogue a block also owns 64 output channels
// and stores each branch. With it, a block of 32 pixels walks the branch channels in chunks of 64: each chunk
// is rounded to T (as the reference rounds t_k), stored only when the caller keeps it, and multiplied at once
// into z = t·Pᵀ held in shared memory (the 1×1 projection as a second GEMM); relu(z + p) then joins the fp32
// running sum seeded with the residual, written once at the end. More than kMaxBranches branches run as
// several launches, the later ones taking the running sum as their residual.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "api.h"
#include "check.cuh"
#include "conv_tile.cuh"

namespace medinfer::cuda {

namespace {

using namespace conv;

constexpr int kMaxBranches = 4;
constexpr int kBN = 64;           // output channels per GEMM tile (branch chunk, projection chunk)
constexpr int kBMPlain = 64;      // pixels per block without the epilogue
constexpr int kBMEpilogue = 32;   // with it: the projection's z and the running sum are BM × CO fp32 tiles

struct Params {
  View x;
  int N, C, H, W, O, branches;
  const void* w[kMaxBranches];
  const void* b[kMaxBranches];  // nullptr: no bias
  void* y[kMaxBranches];        // nullptr: not written
  int dil[kMaxBranches];
  bool w_cl;                    // weights channels-last
  std::int64_t sy[4];           // strides of every y
  const void* pw;               // (CO, O) projection; the epilogue only
  const void* pb;               // (CO) or nullptr
  int CO;
  const void* r;
  std::int64_t sr[4];
  void* out;
  std::int64_t so[4];
};

// Shared-memory layout, computed identically on the host (size) and the device (carving).
template <typename T, int BM, bool kEpilogue>
struct Layout {
  static constexpr int ldc = kBN + 4, ldt = kBN + pad<T>();
  std::size_t tiles, rows, c, t, pt, z, sum, bytes;
  int ldz;
  __host__ __device__ explicit Layout(int co) : ldz(((co + kBN - 1) / kBN) * kBN + 4) {
    tiles = 0;
    rows = tiles + align_up(sizeof(Tiles<T, BM, kBN>));
    c = rows + align_up(sizeof(Rows<BM>));
    t = c + align_up(sizeof(float) * BM * ldc);
    pt = t + (kEpilogue ? align_up(sizeof(T) * BM * ldt) : 0);
    z = pt + (kEpilogue ? align_up(sizeof(T) * kBN * ldt) : 0);
    sum = z + (kEpilogue ? align_up(sizeof(float) * BM * ldz) : 0);
    bytes = sum + (kEpilogue ? align_up(sizeof(float) * BM * ldz) : 0);
  }
};

template <typename T, int BM, bool kEpilogue>
__global__ void __launch_bounds__(kThreads) dilated_branches_kernel(Params p) {
  extern __shared__ __align__(kSmemAlign) unsigned char smem[];
  using L = Layout<T, BM, kEpilogue>;
  const L lay(p.CO);
  auto& tiles = *reinterpret_cast<Tiles<T, BM, kBN>*>(smem + lay.tiles);
  auto& rows = *reinterpret_cast<Rows<BM>*>(smem + lay.rows);
  float* c = reinterpret_cast<float*>(smem + lay.c);
  T* t = reinterpret_cast<T*>(smem + lay.t);
  T* pt = reinterpret_cast<T*>(smem + lay.pt);
  float* z = reinterpret_cast<float*>(smem + lay.z);
  float* sum = reinterpret_cast<float*>(smem + lay.sum);
  const T* r = static_cast<const T*>(p.r);
  const T* pw = static_cast<const T*>(p.pw);

  rows.flat(static_cast<std::int64_t>(blockIdx.x) * BM, p.N, p.H, p.W, p.x.sn);
  __syncthreads();
  if constexpr (kEpilogue) {
    for (int i = threadIdx.x; i < BM * lay.ldz; i += kThreads) {
      const int m = i % BM, co = i / BM;
      sum[m * lay.ldz + co] = rows.n[m] >= 0 && co < p.CO
          ? Num<T>::to_float(r[rows.n[m] * p.sr[0] + co * p.sr[1] + rows.h[m] * p.sr[2] + rows.w[m] * p.sr[3]])
          : 0.f;
    }
  }
  // With the epilogue a block covers every branch channel (the projection needs them all); otherwise one chunk.
  const int o_begin = kEpilogue ? 0 : blockIdx.y * kBN, o_end = kEpilogue ? p.O : o_begin + 1;
  for (int k = 0; k < p.branches; ++k) {
    const T* bias = static_cast<const T*>(p.b[k]);
    T* y = static_cast<T*>(p.y[k]);
    if constexpr (kEpilogue) {
      for (int i = threadIdx.x; i < BM * lay.ldz; i += kThreads) z[i] = 0.f;
    }
    for (int o0 = o_begin; o0 < o_end; o0 += kBN) {
      Mma<T, BM, kBN> acc;
      acc.zero();
      conv_accumulate(acc, tiles, rows, p.x, p.C, 0, 3, p.dil[k], static_cast<const T*>(p.w[k]), p.w_cl, p.O,
                      o0);
      acc.store(c, L::ldc);
      __syncthreads();
      for (int i = threadIdx.x; i < BM * kBN; i += kThreads) {
        const int m = i % BM, j = i / BM, o = o0 + j;  // pixel fastest: coalesced NCHW stores
        const T v = Num<T>::from_float(c[m * L::ldc + j] + (bias && o < p.O ? Num<T>::to_float(bias[o]) : 0.f));
        if (y && rows.n[m] >= 0 && o < p.O)
          y[rows.n[m] * p.sy[0] + o * p.sy[1] + rows.h[m] * p.sy[2] + rows.w[m] * p.sy[3]] = v;
        if constexpr (kEpilogue) t[m * L::ldt + j] = o < p.O ? v : Num<T>::from_float(0.f);
      }
      __syncthreads();
      if constexpr (kEpilogue) {
        // z[:, co0:co0+64] += t · Pᵀ[o0:o0+64, co0:co0+64], P stored (CO, O).
        for (int co0 = 0; co0 < p.CO; co0 += kBN) {
          for (int i = threadIdx.x; i < kBN * kBN; i += kThreads) {
            const int j = i % kBN, cc = i / kBN, o = o0 + j, co = co0 + cc;
            pt[j * L::ldt + cc] = o < p.O && co < p.CO ? pw[static_cast<std::int64_t>(co) * p.O + o]
                                                       : Num<T>::from_float(0.f);
          }
          __syncthreads();
          Mma<T, BM, kBN> proj;
          proj.load(z + co0, lay.ldz);
          proj.mma(t, L::ldt, pt, L::ldt, kBN);
          proj.store(z + co0, lay.ldz);
          __syncthreads();
        }
      }
    }
    if constexpr (kEpilogue) {
      const T* pb = static_cast<const T*>(p.pb);
      for (int i = threadIdx.x; i < BM * lay.ldz; i += kThreads) {
        const int co = i / BM;
        const int at = (i % BM) * lay.ldz + co;
        if (co < p.CO) sum[at] += fmaxf(z[at] + (pb ? Num<T>::to_float(pb[co]) : 0.f), 0.f);
      }
      __syncthreads();
    }
  }
  if constexpr (kEpilogue) {
    T* out = static_cast<T*>(p.out);
    for (int i = threadIdx.x; i < BM * p.CO; i += kThreads) {
      const int m = i % BM, co = i / BM;
      if (rows.n[m] >= 0)
        out[rows.n[m] * p.so[0] + co * p.so[1] + rows.h[m] * p.so[2] + rows.w[m] * p.so[3]] =
            Num<T>::from_float(sum[m * lay.ldz + co]);
    }
  }
}

template <typename T, bool kEpilogue>
void launch_group(const Params& p, std::uintptr_t stream) {
  constexpr int BM = kEpilogue ? kBMEpilogue : kBMPlain;
  const std::int64_t pixels = static_cast<std::int64_t>(p.N) * p.H * p.W;
  const dim3 grid(static_cast<unsigned>((pixels + BM - 1) / BM), kEpilogue ? 1u : (p.O + kBN - 1) / kBN);
  launch(dilated_branches_kernel<T, BM, kEpilogue>, grid, Layout<T, BM, kEpilogue>(p.CO).bytes, stream, p,
         "dilated_branches_kernel launch");
}

void copy_strides(std::int64_t (&dst)[4], const Tensor4& t) {
  for (int i = 0; i < 4; ++i) dst[i] = t.stride[i];
}

}  // namespace

void dilated_branches(const DilatedBranchesArgs& a, std::uintptr_t stream) {
  const std::size_t nb = a.weights.size();
  if (nb == 0 || a.biases.size() != nb || a.dilations.size() != nb || a.outputs.size() != nb)
    throw std::invalid_argument("cuda dilated_branches: need one weight, bias, dilation and output per branch");
  const bool epilogue = a.project_weight != 0;
  if (epilogue && (a.out.data == 0 || a.residual.data == 0))
    throw std::invalid_argument("cuda dilated_branches: the epilogue needs residual and out tensors");
  if (epilogue && a.out.size[1] > kMaxProjectWidth)
    throw std::invalid_argument("cuda dilated_branches: the fused epilogue projects to at most " +
                                std::to_string(kMaxProjectWidth) + " channels, got " + std::to_string(a.out.size[1]));
  Params p{};
  p.x = view(a.x);
  p.N = static_cast<int>(a.x.size[0]);
  p.C = static_cast<int>(a.x.size[1]);
  p.H = static_cast<int>(a.x.size[2]);
  p.W = static_cast<int>(a.x.size[3]);
  p.O = static_cast<int>(a.outputs[0].size[1]);
  p.w_cl = a.weights_channels_last;
  // Every stored branch shares one layout; absent branches (data 0) carry no strides, so take the first
  // stored one (as the Triton launch does). With none stored, only the epilogue writes.
  for (const Tensor4& y : a.outputs)
    if (y.data != 0) {
      copy_strides(p.sy, y);
      break;
    }
  for (const Tensor4& y : a.outputs)
    if (y.size[1] != p.O) throw std::invalid_argument("cuda dilated_branches: branches must have equal widths");
  if (epilogue) {
    p.pw = reinterpret_cast<const void*>(a.project_weight);
    p.pb = reinterpret_cast<const void*>(a.project_bias);
    p.CO = static_cast<int>(a.out.size[1]);
    p.out = reinterpret_cast<void*>(a.out.data);
    copy_strides(p.so, a.out);
  }
  for (std::size_t g = 0; g < nb; g += kMaxBranches) {
    p.branches = static_cast<int>(std::min<std::size_t>(kMaxBranches, nb - g));
    for (int k = 0; k < p.branches; ++k) {
      if (a.dilations[g + k] < 1) throw std::invalid_argument("cuda dilated_branches: dilations must be >= 1");
      p.w[k] = reinterpret_cast<const void*>(a.weights[g + k]);
      p.b[k] = reinterpret_cast<const void*>(a.biases[g + k]);
      p.y[k] = reinterpret_cast<void*>(a.outputs[g + k].data);
      p.dil[k] = a.dilations[g + k];
    }
    if (epilogue) {  // later groups add to the running sum the earlier ones wrote
      const Tensor4& r = g == 0 ? a.residual : a.out;
      p.r = reinterpret_cast<const void*>(r.data);
      copy_strides(p.sr, r);
    }
    dispatch_float(a.dtype, [&](auto tag) {
      using T = decltype(tag);
      if (epilogue)
        launch_group<T, true>(p, stream);
      else
        launch_group<T, false>(p, stream);
    });
  }
}

}  // namespace medinfer::cuda
