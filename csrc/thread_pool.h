// A small fixed-size worker pool shared by the native routines (HU conversion now, the series batcher later).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <future>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace medinfer {

class ThreadPool {
 public:
  explicit ThreadPool(std::size_t n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  std::size_t size() const { return workers_.size(); }

  // Runs fn(begin, end) over [0, n) in chunks of about `grain` items on at most `max_threads` threads
  // (0: all), the caller included, and returns when every chunk is done. The first exception thrown by
  // a chunk is rethrown here after the others finish. Safe to call from inside a pool task: the caller
  // always makes progress itself, so a saturated pool cannot deadlock it.
  void parallel_for(std::size_t n, std::size_t grain, std::size_t max_threads,
                    const std::function<void(std::size_t, std::size_t)>& fn);

  // Queues one task; the future carries its exception, if any.
  std::future<void> submit(std::function<void()> task);

 private:
  void worker_loop();

  std::vector<std::thread> workers_;
  std::queue<std::function<void()>> tasks_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

// Process-wide pool: MEDINFER_NUM_THREADS threads if set, else std::thread::hardware_concurrency().
ThreadPool& default_pool();
std::size_t default_num_threads();

}  // namespace medinfer
