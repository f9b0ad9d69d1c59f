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

// ---- Fused convolutions (dilated_branches.cu, octave_conv.cu), the CUDA backend of medinfer.ops ----------

enum class FloatType { kFloat32, kFloat16, kBFloat16 };  // fp32 accumulation for all three

// A strided 4-D (N, C, H, W) device tensor; strides in elements.
struct Tensor4 {
  std::uintptr_t data = 0;  // 0: absent
  std::int64_t size[4] = {};
  std::int64_t stride[4] = {};
};

// Widest projection the fused DDC epilogue holds in shared memory (medinfer.ops.MAX_PROJECT_WIDTH).
constexpr int kMaxProjectWidth = 256;

// Dilated 3×3 convolutions of x (padding = dilation) for up to any number of branches of width O; with
// project_weight, also the DDC epilogue out = residual + Σ_k relu(P·y_k + project_bias).
struct DilatedBranchesArgs {
  FloatType dtype = FloatType::kFloat32;
  Tensor4 x;                            // (N, C, H, W)
  std::vector<std::uintptr_t> weights;  // per branch, (O, C, 3, 3), contiguous or channels-last:
  bool weights_channels_last = false;   // (o, c, ty, tx) at ((o·3 + ty)·3 + tx)·C + c
  std::vector<std::uintptr_t> biases;   // per branch, (O) or 0
  std::vector<int> dilations;           // per branch, >= 1
  std::vector<Tensor4> outputs;         // per branch (N, O, H, W); data 0: not written (epilogue only)
  std::uintptr_t project_weight = 0;    // contiguous (CO, O); 0: no epilogue
  std::uintptr_t project_bias = 0;      // (CO) or 0
  Tensor4 residual, out;                // (N, CO, H, W), with the epilogue
};
void dilated_branches(const DilatedBranchesArgs& args, std::uintptr_t stream);

// Octave convolution, medinfer.models.layers.octave_conv: y_h = conv(x_h, w_hh) + up2(conv(x_l, w_lh)),
// y_l = conv(pool2(x_h), w_hl) + conv(x_l, w_ll); stride 2 pools both inputs first.
struct OctaveConvArgs {
  FloatType dtype = FloatType::kFloat32;
  Tensor4 x_h, x_l;                                       // x_l.data 0: no low-frequency input
  std::uintptr_t w_hh = 0, w_hl = 0, w_lh = 0, w_ll = 0;  // (O, C, k, k); 0: path absent
  bool weights_channels_last = false;                     // all four contiguous, or all channels-last
  int kernel_size = 3;                                    // 1 or 3
  int stride = 1;                                         // 1 or 2
  Tensor4 y_h, y_l;                                       // y_l.data 0 exactly when w_hl is 0
};
void octave_conv(const OctaveConvArgs& args, std::uintptr_t stream);

}  // namespace medinfer::cuda
