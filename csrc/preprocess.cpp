#include "preprocess.h"

#include <algorithm>
#include <cstdlib>  // defines __GLIBC__ where it applies
#include <stdexcept>

namespace medinfer {

namespace {

// x86-64 glibc builds carry an AVX2 clone of the hot loops, picked at load time (an ifunc); results are
// identical, since FMA contraction is off and each output is summed in the same order. Sanitizer builds keep
// one version so their reports point at plain code.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
#define MEDINFER_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MEDINFER_CLONES
#endif

// HU as the reference computes it (double product, one rounding to float), then the window.
template <typename T>
MEDINFER_CLONES void hu_row(const T* src, std::size_t n, double slope, double intercept, float lo, float hi, float* dst) {
  for (std::size_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(static_cast<double>(src[i]) * slope + intercept);
    dst[i] = std::min(std::max(v, lo), hi);
  }
}

MEDINFER_CLONES void resample_row(const float* src, const ResizeAxis& ax, float* dst) {
  const float* w = ax.weights.data();
  for (std::size_t i = 0; i < ax.out; ++i, w += ax.max_taps) {
    const float* s = src + ax.start[i];
    // Start from the first product, not 0, so that a single unit tap reproduces its input exactly.
    float acc = w[0] * s[0];
    for (std::int32_t k = 1; k < ax.count[i]; ++k) acc += w[k] * s[k];
    dst[i] = acc;
  }
}

MEDINFER_CLONES void combine_rows(const float* cols, const ResizeAxis& rows, std::size_t out_w, float scale,
                                  float offset, float* dst) {
  const float* w = rows.weights.data();
  for (std::size_t i = 0; i < rows.out; ++i, w += rows.max_taps) {
    float* out = dst + i * out_w;
    const float* s0 = cols + static_cast<std::size_t>(rows.start[i]) * out_w;
    for (std::size_t c = 0; c < out_w; ++c) out[c] = w[0] * s0[c];
    for (std::int32_t k = 1; k < rows.count[i]; ++k) {
      const float wk = w[k];
      const float* s = s0 + static_cast<std::size_t>(k) * out_w;
      for (std::size_t c = 0; c < out_w; ++c) out[c] += wk * s[c];
    }
    for (std::size_t c = 0; c < out_w; ++c) out[c] = out[c] * scale + offset;
  }
}

}  // namespace

void preprocess_slice(const SliceSource& src, const PreprocessParams& p, const ResizeAxis& rows,
                      const ResizeAxis& cols, SliceScratch& scratch, float* dst) {
  if (rows.in != src.h || cols.in != src.w || rows.out != p.out_h || cols.out != p.out_w)
    throw std::logic_error("preprocess_slice: resize taps do not match the slice");
  const std::size_t out_w = p.out_w;
  scratch.row.resize(src.w);
  scratch.cols.resize(src.h * out_w);
  // Pass 1: every input row -> HU, window, resampled to out_w columns.
  dispatch_pixel_type(src.type, [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(src.pixels);
    for (std::size_t r = 0; r < src.h; ++r) {
      float* hu = cols.identity() ? scratch.cols.data() + r * out_w : scratch.row.data();
      hu_row(px + r * src.w, src.w, src.slope, src.intercept, p.lo, p.hi, hu);
      if (!cols.identity()) resample_row(hu, cols, scratch.cols.data() + r * out_w);
    }
  });
  // Pass 2: combine rows, vectorised along the contiguous columns, then the affine normalisation.
  combine_rows(scratch.cols.data(), rows, out_w, p.scale, p.offset, dst);
}

}  // namespace medinfer
