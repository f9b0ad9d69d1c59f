// One slice through the preprocessing of medinfer/preprocess.py: HU (eq. 11) -> clip to the window ->
// separable resize -> affine normalisation. float32 arithmetic; the reference (float64) is within 1e-5.
#pragma once

#include <cstddef>
#include <vector>

#include "dtype.h"
#include "resize.h"

namespace medinfer {

struct PreprocessParams {
  std::size_t out_h = 0, out_w = 0, channels = 1;
  float lo = 0, hi = 0;        // clip range in HU; -inf/+inf when there is no window
  float scale = 1, offset = 0;  // out = resized * scale + offset
  bool antialias = true;
};

// One stored slice: `pixels` holds h * w values of `type`; HU = pixel * slope + intercept.
struct SliceSource {
  const void* pixels = nullptr;
  PixelType type = PixelType::kInt16;
  std::size_t h = 0, w = 0;
  double slope = 1, intercept = 0;
};

// Per-thread working memory, reused across slices to avoid reallocating.
struct SliceScratch {
  std::vector<float> row, cols;
};

// Writes the out_h * out_w preprocessed values of `src` to `dst` (one channel). `rows` and `cols` are the
// resize taps for src.h -> out_h and src.w -> out_w.
void preprocess_slice(const SliceSource& src, const PreprocessParams& p, const ResizeAxis& rows,
                      const ResizeAxis& cols, SliceScratch& scratch, float* dst);

}  // namespace medinfer
