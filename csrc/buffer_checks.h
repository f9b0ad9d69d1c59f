// Validation helpers for buffer-protocol arguments, shared by the bindings.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace medinfer {

// Per-slice rescale slopes and intercepts, converted by pybind11 from any numeric sequence.
using DoubleArray = pybind11::array_t<double, pybind11::array::c_style | pybind11::array::forcecast>;

inline bool is_c_contiguous(const pybind11::buffer_info& info) {
  pybind11::ssize_t expected = info.itemsize;
  for (pybind11::ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] != 1 && info.strides[d] != expected) return false;
    expected *= info.shape[d];
  }
  return true;
}

inline std::string shape_str(const std::vector<pybind11::ssize_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace medinfer
