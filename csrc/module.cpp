// medinfer._C: the private native module. Buffers cross as buffer-protocol objects (host) or raw device
// pointers (CUDA); nothing here links against PyTorch. Each feature binds itself (bindings.h).
#include <pybind11/pybind11.h>

#include <thread>

#include "bindings.h"
#include "thread_pool.h"
#ifdef MEDINFER_WITH_CUDA
#include "cuda/api.h"
#endif

namespace py = pybind11;
using namespace medinfer;

namespace {

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
  bind_hu(m);
  bind_batcher(m);
#ifdef MEDINFER_WITH_CUDA
  bind_cuda_device(m);
#endif
}
