#include <pybind11/numpy.h>

#include "bindings.h"
#include "buffer_checks.h"
#include "hu.h"

namespace py = pybind11;

namespace medinfer {

namespace {

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

}  // namespace

void bind_hu(py::module_& m) {
  m.def("hu_convert", &hu_convert_py, py::arg("pixels"), py::arg("out"), py::arg("slopes"),
        py::arg("intercepts"), py::kw_only(), py::arg("threads") = 0,
        "out[s] = pixels[s] * slopes[s] + intercepts[s] (float64 math, one rounding to float32), on the "
        "thread pool with the GIL released. slopes/intercepts: length 1 or one per slice. threads=0: all.");
}

}  // namespace medinfer
