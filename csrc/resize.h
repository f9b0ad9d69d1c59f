// Separable triangle-filter resampling taps, identical to the reference in medinfer/resize.py (PyTorch's
// bilinear interpolate, align_corners=False, with optional antialiasing when shrinking).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace medinfer {

// Output index i reads inputs start[i] .. start[i] + count[i] - 1 with weights[i * max_taps + k].
struct ResizeAxis {
  std::size_t in = 0, out = 0, max_taps = 0;
  std::vector<std::int32_t> start, count;
  std::vector<float> weights;
  bool identity() const { return in == out; }
};

// Weights are computed in double exactly as the Python reference does, then rounded to float.
ResizeAxis make_resize_axis(std::size_t in, std::size_t out, bool antialias);

}  // namespace medinfer
