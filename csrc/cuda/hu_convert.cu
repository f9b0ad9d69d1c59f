#include <cuda_runtime.h>

#include "api.h"
#include "check.cuh"

namespace medinfer::cuda {

namespace {

template <typename T>
__global__ void hu_convert_kernel(const T* __restrict__ src, float* __restrict__ dst, std::size_t total,
                                  std::size_t slice_len, const double* __restrict__ slope,
                                  const double* __restrict__ intercept, bool per_slice) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const std::size_t p = per_slice ? i / slice_len : 0;
    // __dmul_rn/__dadd_rn forbid FMA contraction so results match the host routine bit for bit.
    dst[i] = static_cast<float>(__dadd_rn(__dmul_rn(static_cast<double>(src[i]), slope[p]), intercept[p]));
  }
}

}  // namespace

void hu_convert(const void* src, PixelType type, float* dst, std::size_t n_slices, std::size_t slice_len,
                const double* slope, const double* intercept, std::size_t n_params, std::uintptr_t stream) {
  if (n_params != 1 && n_params != n_slices)
    throw std::invalid_argument("cuda hu_convert: need one slope/intercept pair or one per slice");
  const std::size_t total = n_slices * slice_len;
  if (total == 0) return;
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<std::size_t>((total + kThreads - 1) / kThreads, 65535));
  auto s = reinterpret_cast<cudaStream_t>(stream);
  dispatch_pixel_type(type, [&](auto tag) {
    using T = decltype(tag);
    hu_convert_kernel<T><<<blocks, kThreads, 0, s>>>(static_cast<const T*>(src), dst, total, slice_len, slope,
                                                     intercept, n_params != 1);
  });
  check(cudaGetLastError(), "hu_convert_kernel launch");
}

}  // namespace medinfer::cuda
