// Host-side entry points of csrc/cuda, compiled only when CMake finds nvcc (MEDINFER_WITH_CUDA).
// Everything takes raw device pointers and a cudaStream_t passed as an integer, so callers need no
// PyTorch: any framework's tensor (or a cudaMalloc'd buffer) can be handed in by address.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../dtype.h"

namespace medinfer::cuda {

struct DeviceInfo {
  int index;
  std::string name;
  int major, minor;
  std::size_t total_memory;
  int multiprocessors;
};

// Number of visible devices; on failure 0 and `error` says why (no driver, no device, ...).
int device_count(std::string& error);
std::vector<DeviceInfo> devices();
int runtime_version();  // CUDART_VERSION the extension was built against
int driver_version();   // 0 when no driver is installed

// HU conversion on the device: dst[i] = float(src[i] * slope[s] + intercept[s]); slope/intercept are
// device arrays of n_params doubles (1 or n_slices).
void hu_convert(const void* src, PixelType type, float* dst, std::size_t n_slices, std::size_t slice_len,
                const double* slope, const double* intercept, std::size_t n_params, std::uintptr_t stream);

}  // namespace medinfer::cuda
