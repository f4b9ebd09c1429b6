// A fixed pool of threads that run one parallel loop at a time: the loader
// decodes and augments a batch's images on it. The calling thread works too,
// so a pool of 1 is just a loop on the caller.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vmoe {

class WorkerPool {
 public:
  // `threads` >= 1 threads in all, the caller of parallel_for included.
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Calls fn(i) for every i in [0, n), spread over the threads, and returns
  // when all are done. Rethrows the first exception any call threw (the
  // other items still run). Not reentrant: one loop at a time.
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void work();  // takes items of the current loop until none are left
  void worker_main();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, finished_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, next_ = 0, done_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace vmoe
