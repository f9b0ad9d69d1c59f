// Hounsfield conversion, HU = pixel * RescaleSlope + RescaleIntercept (the DDC-ResNet paper, eq. 11), per slice.
#pragma once

#include <cstddef>

#include "dtype.h"
#include "thread_pool.h"

namespace medinfer {

// src holds n_slices * slice_len pixels of type `type`, C order. slope/intercept hold n_params values,
// either one per slice or a single pair for all slices. The product is taken in double precision and
// rounded once to float, so results equal numpy's float64 computation cast to float32.
void hu_convert(const void* src, PixelType type, float* dst, std::size_t n_slices, std::size_t slice_len,
                const double* slope, const double* intercept, std::size_t n_params, ThreadPool& pool,
                std::size_t max_threads);

}  // namespace medinfer
