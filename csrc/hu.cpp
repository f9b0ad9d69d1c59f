#include "hu.h"

#include <algorithm>
#include <stdexcept>

namespace medinfer {

namespace {

constexpr std::size_t kGrain = 1 << 16;  // elements per chunk: large enough to amortise scheduling

template <typename T>
void convert_range(const T* src, float* dst, std::size_t begin, std::size_t end, std::size_t slice_len,
                   const double* slope, const double* intercept, std::size_t n_params) {
  while (begin < end) {
    const std::size_t slice = begin / slice_len;
    const std::size_t stop = std::min(end, (slice + 1) * slice_len);
    const std::size_t p = n_params == 1 ? 0 : slice;
    const double s = slope[p], b = intercept[p];
    for (std::size_t i = begin; i < stop; ++i) dst[i] = static_cast<float>(static_cast<double>(src[i]) * s + b);
    begin = stop;
  }
}

}  // namespace

void hu_convert(const void* src, PixelType type, float* dst, std::size_t n_slices, std::size_t slice_len,
                const double* slope, const double* intercept, std::size_t n_params, ThreadPool& pool,
                std::size_t max_threads) {
  if (n_params != 1 && n_params != n_slices)
    throw std::invalid_argument("hu_convert: need one slope/intercept pair, or one per slice (" +
                                std::to_string(n_slices) + "), got " + std::to_string(n_params));
  const std::size_t total = n_slices * slice_len;
  if (total == 0) return;
  dispatch_pixel_type(type, [&](auto tag) {
    using T = decltype(tag);
    const T* typed = static_cast<const T*>(src);
    pool.parallel_for(total, kGrain, max_threads, [&](std::size_t b, std::size_t e) {
      convert_range(typed, dst, b, e, slice_len, slope, intercept, n_params);
    });
  });
}

}  // namespace medinfer
