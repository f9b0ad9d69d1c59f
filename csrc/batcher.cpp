#include "batcher.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "half.h"

namespace medinfer {

Batcher::Batcher(const PreprocessParams& params, std::size_t batch_size, OutputType out,
                 std::vector<SeriesInput> series)
    : params_(params), batch_size_(batch_size), out_(out), series_(std::move(series)) {
  if (batch_size_ == 0) throw std::invalid_argument("batcher: batch_size must be positive");
  if (params_.out_h == 0 || params_.out_w == 0 || params_.channels == 0)
    throw std::invalid_argument("batcher: output size and channels must be positive");
  offsets_.reserve(series_.size() + 1);
  offsets_.push_back(0);
  for (std::size_t s = 0; s < series_.size(); ++s) {
    const SeriesInput& in = series_[s];
    const std::string where = "batcher: series " + std::to_string(s) + ": ";
    if (in.n == 0 || in.h == 0 || in.w == 0) throw std::invalid_argument(where + "empty series");
    if (in.pixels == nullptr) throw std::invalid_argument(where + "no pixel buffer");
    if (in.slopes.size() != in.intercepts.size() || (in.slopes.size() != 1 && in.slopes.size() != in.n))
      throw std::invalid_argument(where + "need one slope/intercept pair, or one per slice (" +
                                  std::to_string(in.n) + ")");
    offsets_.push_back(offsets_.back() + in.n);
    for (auto key : {std::make_pair(in.h, params_.out_h), std::make_pair(in.w, params_.out_w)})
      if (!axes_.count(key)) axes_.emplace(key, make_resize_axis(key.first, key.second, params_.antialias));
  }
}

std::size_t Batcher::bytes_per_batch() const {
  return batch_size_ * elements_per_slice() * (out_ == OutputType::kFloat32 ? 4 : 2);
}

const ResizeAxis& Batcher::axis(std::size_t in, std::size_t out) const { return axes_.at({in, out}); }

std::pair<std::size_t, std::size_t> Batcher::locate(std::size_t global) const {
  if (global >= total_slices()) throw std::out_of_range("batcher: slice index out of range");
  const auto it = std::upper_bound(offsets_.begin(), offsets_.end(), global);
  const auto s = static_cast<std::size_t>(it - offsets_.begin()) - 1;
  return {s, global - offsets_[s]};
}

std::size_t Batcher::prepare(std::size_t index, void* dst, ThreadPool& pool, std::size_t threads) const {
  if (index >= num_batches()) throw std::out_of_range("batcher: batch index out of range");
  const std::size_t first = index * batch_size_;
  const std::size_t count = std::min(batch_size_, total_slices() - first);
  const std::size_t plane = params_.out_h * params_.out_w;
  const std::size_t row_elems = elements_per_slice();
  const std::size_t elem_size = out_ == OutputType::kFloat32 ? 4 : 2;
  auto* bytes = static_cast<unsigned char*>(dst);
  pool.parallel_for(count, 1, threads, [&](std::size_t b, std::size_t e) {
    // Per thread and kept: a 512² slice needs ~0.5 MB, which malloc would otherwise map and unmap per slice.
    thread_local SliceScratch scratch;
    thread_local std::vector<float> converted;
    for (std::size_t r = b; r < e; ++r) {
      const auto [s, k] = locate(first + r);
      const SeriesInput& in = series_[s];
      const std::size_t p = in.slopes.size() == 1 ? 0 : k;
      SliceSource src;
      src.type = in.type;
      src.h = in.h;
      src.w = in.w;
      src.slope = in.slopes[p];
      src.intercept = in.intercepts[p];
      src.pixels = static_cast<const unsigned char*>(in.pixels) + k * in.h * in.w * pixel_type_size(in.type);
      unsigned char* row = bytes + r * row_elems * elem_size;
      if (out_ == OutputType::kFloat32) {
        preprocess_slice(src, params_, axis(in.h, params_.out_h), axis(in.w, params_.out_w), scratch,
                         reinterpret_cast<float*>(row));
      } else {
        converted.resize(plane);
        preprocess_slice(src, params_, axis(in.h, params_.out_h), axis(in.w, params_.out_w), scratch,
                         converted.data());
        floats_to_halves(converted.data(), reinterpret_cast<std::uint16_t*>(row), plane);
      }
      for (std::size_t c = 1; c < params_.channels; ++c)
        std::memcpy(row + c * plane * elem_size, row, plane * elem_size);
    }
  });
  // Padding rows: the buffer may be a recycled one holding an earlier batch.
  std::memset(bytes + count * row_elems * elem_size, 0, (batch_size_ - count) * row_elems * elem_size);
  return count;
}

Prefetcher::Prefetcher(const Batcher& batcher, ThreadPool& pool, std::size_t threads)
    : batcher_(batcher), pool_(pool), threads_(threads), thread_([this] { run(); }) {}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Prefetcher::post(std::size_t index, void* dst) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.emplace_back(index, dst);
  }
  cv_.notify_all();
}

Prefetcher::Done Prefetcher::wait(std::size_t index) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return done_.count(index) > 0; });
  auto node = done_.extract(index);
  if (node.mapped().second) std::rethrow_exception(node.mapped().second);
  return node.mapped().first;
}

void Prefetcher::run() {
  for (;;) {
    std::pair<std::size_t, void*> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = jobs_.front();
      jobs_.pop_front();
    }
    const auto t0 = std::chrono::steady_clock::now();
    Done done{0, 0.0};
    std::exception_ptr error;
    try {
      done.count = batcher_.prepare(job.first, job.second, pool_, threads_);
    } catch (...) {
      error = std::current_exception();
    }
    done.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_[job.first] = {done, error};
    }
    cv_.notify_all();
  }
}

}  // namespace medinfer
