// Python bindings of csrc/cuda: device queries and device-pointer routines. Compiled only with CUDA.
#include <pybind11/stl.h>

#include <string>

#include "../bindings.h"
#include "api.h"

namespace py = pybind11;

namespace medinfer {

namespace {

cuda::FloatType float_type(const std::string& name) {
  if (name == "float32") return cuda::FloatType::kFloat32;
  if (name == "float16") return cuda::FloatType::kFloat16;
  if (name == "bfloat16") return cuda::FloatType::kBFloat16;
  throw py::value_error("fused convolutions take float32, float16 or bfloat16, got '" + name + "'");
}

// (data_ptr, (N, C, H, W), (sN, sC, sH, sW)) -> Tensor4; None -> absent.
cuda::Tensor4 tensor4(const py::handle& h) {
  cuda::Tensor4 t;
  if (h.is_none()) return t;
  const auto tup = h.cast<py::tuple>();
  const char* form = "a tensor crosses as (data_ptr, (N, C, H, W), (sN, sC, sH, sW))";
  if (tup.size() != 3) throw py::value_error(form);
  const auto size = tup[1].cast<std::vector<std::int64_t>>(), stride = tup[2].cast<std::vector<std::int64_t>>();
  if (size.size() != 4 || stride.size() != 4) throw py::value_error(form);
  t.data = tup[0].cast<std::uintptr_t>();
  for (int i = 0; i < 4; ++i) {
    t.size[i] = size[i];
    t.stride[i] = stride[i];
  }
  return t;
}

}  // namespace

void bind_cuda_device(py::module_& m) {
  m.def("cuda_device_count", [] {
    std::string error;
    const int n = cuda::device_count(error);
    return py::make_tuple(n, error);
  }, "(count, reason): reason says why count is 0.");
  m.def("cuda_devices", [] {
    py::list out;
    for (const auto& d : cuda::devices()) {
      py::dict item;
      item["index"] = d.index;
      item["name"] = d.name;
      item["compute_capability"] = py::make_tuple(d.major, d.minor);
      item["total_memory"] = d.total_memory;
      item["multiprocessors"] = d.multiprocessors;
      out.append(item);
    }
    return out;
  }, "Properties of each visible device (no PyTorch needed).");
  m.def("cuda_driver_version", &cuda::driver_version, "Driver's CUDA version, 0 without a driver.");
  m.def("cuda_hu_convert",
        [](std::uintptr_t src, const std::string& dtype, std::uintptr_t dst, std::size_t n_slices,
           std::size_t slice_len, std::uintptr_t slopes, std::uintptr_t intercepts, std::size_t n_params,
           std::uintptr_t stream) {
          const PixelType type = pixel_type_from_name(dtype);
          py::gil_scoped_release release;
          cuda::hu_convert(reinterpret_cast<const void*>(src), type, reinterpret_cast<float*>(dst), n_slices,
                           slice_len, reinterpret_cast<const double*>(slopes),
                           reinterpret_cast<const double*>(intercepts), n_params, stream);
        },
        py::arg("src"), py::arg("dtype"), py::arg("dst"), py::arg("n_slices"), py::arg("slice_len"),
        py::arg("slopes"), py::arg("intercepts"), py::arg("n_params"), py::arg("stream") = 0,
        "Device HU conversion on raw pointers; slopes/intercepts are device float64 arrays.");
  m.def("cuda_dilated_branches",
        [](const std::string& dtype, const py::handle& x, std::vector<std::uintptr_t> weights,
           bool weights_channels_last, std::vector<std::uintptr_t> biases, std::vector<int> dilations,
           const py::list& outputs, std::uintptr_t project_weight, std::uintptr_t project_bias,
           const py::handle& residual, const py::handle& out, std::uintptr_t stream) {
          cuda::DilatedBranchesArgs a{float_type(dtype), tensor4(x), std::move(weights), weights_channels_last,
                                      std::move(biases), std::move(dilations), {}, project_weight, project_bias,
                                      tensor4(residual), tensor4(out)};
          for (const auto& y : outputs) a.outputs.push_back(tensor4(y));
          py::gil_scoped_release release;
          cuda::dilated_branches(a, stream);
        },
        py::arg("dtype"), py::arg("x"), py::arg("weights"), py::arg("weights_channels_last"), py::arg("biases"),
        py::arg("dilations"),
        py::arg("outputs"), py::arg("project_weight") = 0, py::arg("project_bias") = 0,
        py::arg("residual") = py::none(), py::arg("out") = py::none(), py::arg("stream") = 0,
        "Fused dilated 3x3 branches (+ DDC epilogue when project_weight != 0) on raw device pointers. Tensors "
        "cross as (data_ptr, shape, strides); an output with data_ptr 0 is not written.");
  m.def("cuda_octave_conv",
        [](const std::string& dtype, const py::handle& x_h, const py::handle& x_l, std::uintptr_t w_hh,
           std::uintptr_t w_hl, std::uintptr_t w_lh, std::uintptr_t w_ll, bool weights_channels_last,
           int kernel_size, int stride, const py::handle& y_h, const py::handle& y_l, std::uintptr_t stream) {
          const cuda::OctaveConvArgs a{float_type(dtype), tensor4(x_h), tensor4(x_l), w_hh, w_hl, w_lh, w_ll,
                                       weights_channels_last, kernel_size, stride, tensor4(y_h), tensor4(y_l)};
          py::gil_scoped_release release;
          cuda::octave_conv(a, stream);
        },
        py::arg("dtype"), py::arg("x_h"), py::arg("x_l"), py::arg("w_hh"), py::arg("w_hl"), py::arg("w_lh"),
        py::arg("w_ll"), py::arg("weights_channels_last"), py::arg("kernel_size"), py::arg("stride"), py::arg("y_h"),
        py::arg("y_l"),
        py::arg("stream") = 0,
        "Octave convolution on raw device pointers (weights (O, C, k, k), all contiguous or all channels-last; "
        "0 = absent path).");
}

}  // namespace medinfer
