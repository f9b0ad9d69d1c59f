// Python bindings of csrc/cuda: device queries and device-pointer routines. Compiled only with CUDA.
#include <pybind11/stl.h>

#include <string>

#include "../bindings.h"
#include "api.h"

namespace py = pybind11;

namespace medinfer {

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
}

}  // namespace medinfer
