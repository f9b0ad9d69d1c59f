// The series batcher: slices of many series -> fixed-size batches of preprocessed float32/float16 input,
// computed on the shared ThreadPool, with a background producer that prepares the next batch while the
// consumer (the engine) runs the current one.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "preprocess.h"
#include "resize.h"
#include "thread_pool.h"

namespace medinfer {

enum class OutputType { kFloat32, kFloat16 };

// One series: n slices of h * w stored pixels (C order) and per-slice (or one shared) slope/intercept.
// The batcher only reads `pixels`; its owner keeps it alive and unchanged while the batcher exists.
struct SeriesInput {
  const void* pixels = nullptr;
  PixelType type = PixelType::kInt16;
  std::size_t n = 0, h = 0, w = 0;
  std::vector<double> slopes, intercepts;  // length n, or 1 for all slices
};

// Immutable after construction, so any number of threads may call prepare() for distinct batches.
class Batcher {
 public:
  Batcher(const PreprocessParams& params, std::size_t batch_size, OutputType out, std::vector<SeriesInput> series);

  std::size_t batch_size() const { return batch_size_; }
  std::size_t total_slices() const { return offsets_.back(); }
  std::size_t num_batches() const { return (total_slices() + batch_size_ - 1) / batch_size_; }
  std::size_t elements_per_slice() const { return params_.channels * params_.out_h * params_.out_w; }
  std::size_t bytes_per_batch() const;

  // Global slice index -> (series, slice within it).
  std::pair<std::size_t, std::size_t> locate(std::size_t global) const;

  // Fills dst (batch_size * C * out_h * out_w values of the output type) with batch `index` and returns
  // how many rows are real; rows past that are zeroed. Slices run on `pool` with at most `threads`
  // threads (0: all), the caller included.
  std::size_t prepare(std::size_t index, void* dst, ThreadPool& pool, std::size_t threads) const;

 private:
  const ResizeAxis& axis(std::size_t in, std::size_t out) const;

  PreprocessParams params_;
  std::size_t batch_size_;
  OutputType out_;
  std::vector<SeriesInput> series_;
  std::vector<std::size_t> offsets_;  // offsets_[s] = first global slice of series s; back() = total
  std::map<std::pair<std::size_t, std::size_t>, ResizeAxis> axes_;  // (in, out) -> taps
};

// Prepares posted batches in order on its own thread (which also works in the pool's parallel_for), so
// the consumer overlaps its work on batch k with the preparation of batch k + 1.
class Prefetcher {
 public:
  Prefetcher(const Batcher& batcher, ThreadPool& pool, std::size_t threads);
  ~Prefetcher();  // stops after the batch in progress; pending posts are dropped
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Queues batch `index` to be written into dst, which must stay valid until wait(index) returns or the
  // Prefetcher is destroyed.
  void post(std::size_t index, void* dst);

  struct Done {
    std::size_t count;
    double seconds;  // spent preparing this batch
  };
  // Blocks until batch `index` (posted earlier) is ready; rethrows an exception from its preparation.
  Done wait(std::size_t index);

 private:
  void run();

  const Batcher& batcher_;
  ThreadPool& pool_;
  std::size_t threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<std::size_t, void*>> jobs_;
  std::map<std::size_t, std::pair<Done, std::exception_ptr>> done_;
  bool stop_ = false;
  std::thread thread_;  // last: started once the members it uses exist
};

}  // namespace medinfer
