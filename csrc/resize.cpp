#include "resize.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace medinfer {

ResizeAxis make_resize_axis(std::size_t in, std::size_t out, bool antialias) {
  if (in == 0 || out == 0)
    throw std::invalid_argument("resize: sizes must be positive, got " + std::to_string(in) + " -> " +
                                std::to_string(out));
  ResizeAxis ax;
  ax.in = in;
  ax.out = out;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  // Shrinking with antialias stretches the unit triangle over `scale` input pixels.
  const double stretch = (antialias && scale > 1.0) ? scale : 1.0;
  const double support = stretch;
  std::vector<std::vector<double>> rows(out);
  ax.start.resize(out);
  ax.count.resize(out);
  for (std::size_t i = 0; i < out; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    const auto lo = std::max<long long>(static_cast<long long>(center - support + 0.5), 0);
    const auto hi = std::min<long long>(static_cast<long long>(center + support + 0.5), static_cast<long long>(in));
    long long first = -1;
    std::vector<double>& w = rows[i];
    for (long long j = lo; j < hi; ++j) {
      const double x = std::fabs((static_cast<double>(j) - center + 0.5) / stretch);
      if (x < 1.0) {
        // Taps with weight zero are left out, like the reference; nonzero ones are contiguous.
        if (first < 0) first = j;
        w.push_back(1.0 - x);
      }
    }
    double total = 0.0;
    for (double v : w) total += v;
    for (double& v : w) v /= total;
    ax.start[i] = static_cast<std::int32_t>(first);
    ax.count[i] = static_cast<std::int32_t>(w.size());
    ax.max_taps = std::max(ax.max_taps, w.size());
  }
  ax.weights.assign(out * ax.max_taps, 0.0f);
  for (std::size_t i = 0; i < out; ++i)
    for (std::size_t k = 0; k < rows[i].size(); ++k) ax.weights[i * ax.max_taps + k] = static_cast<float>(rows[i][k]);
  return ax;
}

}  // namespace medinfer
