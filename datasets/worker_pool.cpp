#include "datasets/worker_pool.h"

#include <utility>

#include "core/check.h"

namespace vmoe {

WorkerPool::WorkerPool(int threads) {
  VMOE_CHECK(threads >= 1, "a worker pool needs at least 1 thread, got ", threads);
  for (int t = 1; t < threads; ++t) workers_.emplace_back([this] { worker_main(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void WorkerPool::work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (next_ < n_) {
    const int64_t i = next_++;
    const std::function<void(int64_t)>& fn = *fn_;
    lock.unlock();
    std::exception_ptr error;
    try {
      fn(i);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error && !error_) error_ = error;
    if (++done_ == n_) finished_.notify_all();
  }
}

void WorkerPool::worker_main() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    work();
  }
}

void WorkerPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_ = done_ = 0;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  work();
  std::unique_lock<std::mutex> lock(mu_);
  finished_.wait(lock, [&] { return done_ == n_; });
  fn_ = nullptr;
  n_ = 0;  // late workers find nothing to take
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

}  // namespace vmoe
