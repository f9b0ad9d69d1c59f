#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include <unistd.h>

namespace medinfer {

ThreadPool::ThreadPool(std::size_t n_threads) {
  n_threads = std::max<std::size_t>(n_threads, 1);
  workers_.reserve(n_threads);
  for (std::size_t i = 0; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (stopping_ && tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop();
    }
    task();
  }
}

std::future<void> ThreadPool::submit(std::function<void()> task) {
  auto packaged = std::make_shared<std::packaged_task<void()>>(std::move(task));
  std::future<void> result = packaged->get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.emplace([packaged] { (*packaged)(); });
  }
  cv_.notify_one();
  return result;
}

namespace {

// Shared between the caller and the helpers it queued; helpers may run after the caller returned,
// so the state is reference-counted rather than living on the caller's stack.
struct ForState {
  std::size_t n, grain, n_chunks;
  std::function<void(std::size_t, std::size_t)> fn;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::condition_variable done_cv;
  std::size_t done = 0;
  std::exception_ptr error;

  void run_chunks() {
    for (;;) {
      const std::size_t chunk = next.fetch_add(1);
      if (chunk >= n_chunks) return;
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          const std::size_t begin = chunk * grain;
          fn(begin, std::min(n, begin + grain));
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!error) error = std::current_exception();
          failed = true;
        }
      }
      std::lock_guard<std::mutex> lock(mutex);
      if (++done == n_chunks) done_cv.notify_all();
    }
  }
};

}  // namespace

void ThreadPool::parallel_for(std::size_t n, std::size_t grain, std::size_t max_threads,
                              const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  const std::size_t n_chunks = (n + grain - 1) / grain;
  std::size_t threads = max_threads == 0 ? size() + 1 : max_threads;
  threads = std::min(threads, n_chunks);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  auto state = std::make_shared<ForState>();
  state->n = n;
  state->grain = grain;
  state->n_chunks = n_chunks;
  state->fn = fn;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t i = 0; i + 1 < threads; ++i) tasks_.emplace([state] { state->run_chunks(); });
  }
  cv_.notify_all();
  state->run_chunks();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->done_cv.wait(lock, [&] { return state->done == state->n_chunks; });
  if (state->error) std::rethrow_exception(state->error);
}

std::size_t default_num_threads() {
  if (const char* env = std::getenv("MEDINFER_NUM_THREADS")) {
    try {
      const long v = std::stol(env);
      if (v > 0) return static_cast<std::size_t>(v);
    } catch (...) {
      // An unparsable value falls back to the hardware count, as an unset one does.
    }
  }
  return std::max<std::size_t>(std::thread::hardware_concurrency(), 1);
}

ThreadPool& default_pool() {
  // Never destroyed: joining at static-destruction time races interpreter shutdown. A forked child
  // (DataLoader workers) inherits the object but not its threads, so it gets a pool of its own.
  static std::mutex mutex;
  static ThreadPool* pool = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (pool == nullptr || owner != getpid()) {
    // The caller of parallel_for works too, so the pool holds one thread fewer than the target count.
    pool = new ThreadPool(std::max<std::size_t>(default_num_threads(), 2) - 1);
    owner = getpid();
  }
  return *pool;
}

}  // namespace medinfer
