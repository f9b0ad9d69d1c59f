// Each feature of medinfer._C binds itself in its own file; module.cpp calls them in order.
#pragma once

#include <pybind11/pybind11.h>

namespace medinfer {

void bind_hu(pybind11::module_& m);       // hu_bindings.cpp
void bind_batcher(pybind11::module_& m);  // batcher_bindings.cpp
#ifdef MEDINFER_WITH_CUDA
void bind_cuda_device(pybind11::module_& m);  // cuda/bindings.cpp
#endif

}  // namespace medinfer
