// medinfer._C.BatchRun: one pass of the series batcher over a list of series, driven from Python as an
// iterator of batches. Output arrays are numpy arrays recycled only once Python no longer references them,
// so a batch the caller still holds is never overwritten.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <chrono>
#include <exception>
#include <memory>

#include "batcher.h"
#include "bindings.h"
#include "buffer_checks.h"

namespace py = pybind11;

namespace medinfer {

namespace {

// Output arrays kept for reuse; a batch the caller keeps longer gets a fresh array instead.
constexpr std::size_t kMaxPooledArrays = 4;

class BatchRun {
 public:
  BatchRun(const py::dict& params, std::size_t batch_size, const std::string& dtype, std::size_t threads,
           const py::list& series)
      : threads_(threads) {
    PreprocessParams p;
    p.out_h = params["out_h"].cast<std::size_t>();
    p.out_w = params["out_w"].cast<std::size_t>();
    p.channels = params["channels"].cast<std::size_t>();
    p.lo = params["lo"].cast<float>();
    p.hi = params["hi"].cast<float>();
    p.scale = params["scale"].cast<float>();
    p.offset = params["offset"].cast<float>();
    p.antialias = params["antialias"].cast<bool>();
    OutputType out;
    if (dtype == "float32") {
      out = OutputType::kFloat32;
      dtype_ = py::dtype("float32");
    } else if (dtype == "float16") {
      out = OutputType::kFloat16;
      dtype_ = py::dtype("float16");
    } else {
      throw py::value_error("BatchRun: dtype must be 'float32' or 'float16', got '" + dtype + "'");
    }
    std::vector<SeriesInput> inputs;
    for (std::size_t i = 0; i < series.size(); ++i) {
      const auto item = series[i].cast<py::tuple>();
      if (item.size() != 3) throw py::value_error("BatchRun: each series is (pixels, slopes, intercepts)");
      const std::string where = "BatchRun: series " + std::to_string(i) + ": ";
      // The view pins the exporter (a numpy array) for as long as this run exists.
      views_.push_back(std::make_unique<py::buffer_info>(item[0].cast<py::buffer>().request()));
      const py::buffer_info& v = *views_.back();
      if (v.ndim != 3) throw py::value_error(where + "pixels must be (N, H, W), got shape " + shape_str(v.shape));
      if (!is_c_contiguous(v)) throw py::value_error(where + "pixels must be C-contiguous");
      SeriesInput in;
      in.pixels = v.ptr;
      try {
        in.type = pixel_type_from_buffer_format(v.format, static_cast<std::size_t>(v.itemsize));
      } catch (const std::invalid_argument& e) {
        throw py::value_error(where + e.what());
      }
      in.n = static_cast<std::size_t>(v.shape[0]);
      in.h = static_cast<std::size_t>(v.shape[1]);
      in.w = static_cast<std::size_t>(v.shape[2]);
      const auto slopes = item[1].cast<DoubleArray>();
      const auto intercepts = item[2].cast<DoubleArray>();
      in.slopes.assign(slopes.data(), slopes.data() + slopes.size());
      in.intercepts.assign(intercepts.data(), intercepts.data() + intercepts.size());
      inputs.push_back(std::move(in));
    }
    batcher_ = std::make_unique<Batcher>(p, batch_size, out, std::move(inputs));  // invalid_argument -> ValueError
    shape_ = {static_cast<py::ssize_t>(batch_size), static_cast<py::ssize_t>(p.channels),
              static_cast<py::ssize_t>(p.out_h), static_cast<py::ssize_t>(p.out_w)};
  }

  ~BatchRun() { prefetcher_.reset(); }  // joins the producer before the buffers it writes are released

  // (data, count, index) of the next batch, or None after the last one.
  py::object next() {
    const std::size_t n = batcher_->num_batches();
    if (closed_ || next_ >= n) return py::none();
    if (!prefetcher_) {
      prefetcher_ = std::make_unique<Prefetcher>(*batcher_, default_pool(), threads_);
      post(next_);
    }
    if (next_ + 1 < n) post(next_ + 1);  // prepared while the caller works on this one
    Prefetcher::Done done{};
    std::exception_ptr error;
    {
      py::gil_scoped_release release;
      const auto t0 = std::chrono::steady_clock::now();
      try {
        done = prefetcher_->wait(next_);
      } catch (...) {
        error = std::current_exception();
      }
      wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (error) {
      close();  // the failed batch is gone; a later next() must not wait for it
      std::rethrow_exception(error);
    }
    prepare_seconds_ += done.seconds;
    auto node = in_flight_.extract(next_);
    return py::make_tuple(node.mapped(), done.count, next_++);
  }

  void close() {
    closed_ = true;
    if (prefetcher_) {
      py::gil_scoped_release release;
      prefetcher_.reset();
    }
    in_flight_.clear();
  }

  double prepare_seconds() const { return prepare_seconds_; }
  double wait_seconds() const { return wait_seconds_; }

 private:
  void post(std::size_t index) {
    py::array buf = acquire();
    in_flight_.emplace(index, buf);
    prefetcher_->post(index, buf.mutable_data());
  }

  // An output array nobody else references (refcount 1: only the pool), else a new one.
  py::array acquire() {
    for (const py::array& a : pool_)
      if (a.ref_count() == 1) return a;
    py::array fresh(dtype_, shape_);
    if (pool_.size() < kMaxPooledArrays) pool_.push_back(fresh);
    return fresh;
  }

  std::size_t threads_;
  std::vector<py::ssize_t> shape_;  // of every output batch: (batch, C, H, W)
  py::dtype dtype_;
  std::vector<std::unique_ptr<py::buffer_info>> views_;  // outlive the batcher that points into them
  std::unique_ptr<Batcher> batcher_;
  std::vector<py::array> pool_;
  std::map<std::size_t, py::array> in_flight_;  // posted, not yet handed out
  std::unique_ptr<Prefetcher> prefetcher_;
  std::size_t next_ = 0;
  bool closed_ = false;
  double prepare_seconds_ = 0, wait_seconds_ = 0;
};

}  // namespace

void bind_batcher(py::module_& m) {
  py::class_<BatchRun>(m, "BatchRun",
                       "One pass of the series batcher (use medinfer.runtime.SeriesBatcher). Prepares batch "
                       "k + 1 on a background thread while the caller holds batch k.")
      .def(py::init<const py::dict&, std::size_t, const std::string&, std::size_t, const py::list&>(),
           py::arg("params"), py::arg("batch_size"), py::arg("dtype"), py::arg("threads"), py::arg("series"))
      .def_property_readonly("prepare_seconds", &BatchRun::prepare_seconds)
      .def_property_readonly("wait_seconds", &BatchRun::wait_seconds)
      .def("next", &BatchRun::next, "(data (batch, C, H, W), count, index) of the next batch, or None at the end")
      .def("close", &BatchRun::close, "Stop the producer; later next() calls return None");
}

}  // namespace medinfer
