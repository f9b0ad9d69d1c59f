// medinfer._C: the private native module. Buffers cross as buffer-protocol objects (host) or raw device
// pointers (CUDA); nothing here links against PyTorch.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <thread>

#include "dtype.h"
#include "hu.h"
#include "thread_pool.h"
#ifdef MEDINFER_WITH_CUDA
#include "cuda/api.h"
#endif

namespace py = pybind11;
using namespace medinfer;

namespace {

bool is_c_contiguous(const py::buffer_info& info) {
  py::ssize_t expected = info.itemsize;
  for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
    if (info.shape[d] != 1 && info.strides[d] != expected) return false;
    expected *= info.shape[d];
  }
  return true;
}

std::string shape_str(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

void hu_convert_py(const py::buffer& src, const py::buffer& out, const DoubleArray& slopes,
                   const DoubleArray& intercepts, std::size_t threads) {
  const py::buffer_info s = src.request();
  const py::buffer_info o = out.request(/*writable=*/true);
  if (s.ndim < 2) throw py::value_error("hu_convert: pixels must be (slices, ...) with ndim >= 2, got shape " +
                                        shape_str(s.shape));
  if (!is_c_contiguous(s)) throw py::value_error("hu_convert: pixels must be C-contiguous");
  if (o.format != py::format_descriptor<float>::format() || o.itemsize != 4)
    throw py::value_error("hu_convert: out must be float32, got format '" + o.format + "'");
  if (o.shape != s.shape)
    throw py::value_error("hu_convert: out shape " + shape_str(o.shape) + " differs from pixels shape " +
                          shape_str(s.shape));
  if (!is_c_contiguous(o)) throw py::value_error("hu_convert: out must be C-contiguous");
  if (slopes.ndim() != 1 || intercepts.ndim() != 1 || slopes.size() != intercepts.size())
    throw py::value_error("hu_convert: slopes and intercepts must be 1-D of equal length");
  const PixelType type = pixel_type_from_buffer_format(s.format, static_cast<std::size_t>(s.itemsize));
  const auto n_slices = static_cast<std::size_t>(s.shape[0]);
  const auto slice_len = n_slices == 0 ? 0 : static_cast<std::size_t>(s.size) / n_slices;
  const auto n_params = static_cast<std::size_t>(slopes.size());
  py::gil_scoped_release release;
  hu_convert(s.ptr, type, static_cast<float*>(o.ptr), n_slices, slice_len, slopes.data(), intercepts.data(),
             n_params, default_pool(), threads);
}

py::dict build_info() {
  py::dict d;
  d["version"] = MEDINFER_VERSION;
#if defined(__clang__)
  d["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = "gcc " __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  d["cxx_standard"] = static_cast<long>(__cplusplus);
  d["default_threads"] = default_num_threads();
  d["hardware_threads"] = std::thread::hardware_concurrency();
#ifdef MEDINFER_WITH_CUDA
  d["cuda"] = true;
  d["cuda_runtime_version"] = cuda::runtime_version();
  d["cuda_archs"] = MEDINFER_CUDA_ARCHS;
#else
  d["cuda"] = false;
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "medinfer's native runtime (private; use the Python API)";

  m.def("build_info", &build_info, "How this extension was built: version, compiler, CUDA.");
  m.def("default_threads", &default_num_threads,
        "Threads the native routines use: MEDINFER_NUM_THREADS, else the hardware count.");
  m.def("hu_convert", &hu_convert_py, py::arg("pixels"), py::arg("out"), py::arg("slopes"),
        py::arg("intercepts"), py::kw_only(), py::arg("threads") = 0,
        "out[s] = pixels[s] * slopes[s] + intercepts[s] (float64 math, one rounding to float32), on the "
        "thread pool with the GIL released. slopes/intercepts: length 1 or one per slice. threads=0: all.");

#ifdef MEDINFER_WITH_CUDA
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
#endif
}
