#include "datasets/loader.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "core/check.h"
#include "datasets/batch_reader.h"

namespace vmoe {

struct Loader::State {
  LoaderOptions options;
  DatasetInfo info;
  int64_t num_batches = 0;
  std::unique_ptr<BatchReader> reader;
  int64_t next_step = 0;  // next batch the consumer gets (no-thread mode) or the thread makes

  // Prefetch queue, guarded by `mu`.
  std::mutex mu;
  std::condition_variable changed;
  std::deque<Batch> queue;
  // Batches the consumer handed back, refilled instead of fresh ones: a batch
  // of 224² floats is 150 MB, whose page faults and zeroing would otherwise
  // sit on the critical path.
  std::vector<Batch> spare;
  bool stop = false;  // set by the destructor
  bool done = false;  // eval: the thread made the last batch
  std::exception_ptr error;
  std::thread thread;

  bool finished(int64_t step) const { return !options.training && step >= num_batches; }
  void run();
};

// Batch N is assembled on the worker pool while one of its threads reads
// batch N + 1's rows (BatchReader::assemble's extra task).
void Loader::State::run() {
  try {
    FetchedBatch current, next;
    if (!finished(next_step)) reader->fetch(next_step, current);
    for (int64_t step = next_step;; ++step) {
      Batch batch;
      {
        std::unique_lock<std::mutex> lock(mu);
        changed.wait(lock,
                     [&] { return stop || static_cast<int64_t>(queue.size()) < options.prefetch; });
        if (stop) return;
        if (finished(step)) {
          done = true;
          changed.notify_all();
          return;
        }
        if (!spare.empty()) {
          batch = std::move(spare.back());
          spare.pop_back();
        }
      }
      std::function<void()> fetch_next;
      if (!finished(step + 1)) fetch_next = [&] { reader->fetch(step + 1, next); };
      reader->assemble(current, batch, fetch_next);
      std::swap(current, next);
      std::lock_guard<std::mutex> lock(mu);
      queue.push_back(std::move(batch));
      changed.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu);
    error = std::current_exception();
    changed.notify_all();
  }
}

Loader::Loader(const LoaderOptions& options) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.options = options;
  const LoaderOptions& o = s.options;
  VMOE_CHECK(o.batch_size > 0, "loader for ", o.path, ": batch_size must be positive, got ",
             o.batch_size);
  VMOE_CHECK(o.world > 0 && o.rank >= 0 && o.rank < o.world, "loader for ", o.path, ": rank ",
             o.rank, " is not in [0, world = ", o.world, ")");
  VMOE_CHECK(o.batch_size % o.world == 0, "loader for ", o.path, ": batch_size ", o.batch_size,
             " is not divisible by world ", o.world, " (each rank must get the same rows)");
  VMOE_CHECK(o.batch_size / o.world <= INT32_MAX, "loader for ", o.path, ": batch_size ",
             o.batch_size, " is too large");
  VMOE_CHECK(o.crop_padding >= 0, "loader for ", o.path, ": crop_padding must be >= 0, got ",
             o.crop_padding);
  VMOE_CHECK(o.prefetch >= 0, "loader for ", o.path, ": prefetch must be >= 0, got ", o.prefetch);
  VMOE_CHECK(o.rows.empty() || !o.training, "loader for ", o.path,
             ": a row list is for evaluation only");
  VMOE_CHECK(o.start_step >= 0, "loader for ", o.path, ": start_step must be >= 0, got ",
             o.start_step);
  VMOE_CHECK(o.threads >= 1, "loader for ", o.path, ": threads must be >= 1, got ", o.threads);
  VMOE_CHECK(o.min_area > 0 && o.min_area <= 1, "loader for ", o.path,
             ": min_area must be in (0, 1], got ", o.min_area);
  VMOE_CHECK(o.eval_crop_fraction > 0 && o.eval_crop_fraction <= 1, "loader for ", o.path,
             ": eval_crop_fraction must be in (0, 1], got ", o.eval_crop_fraction);
  VMOE_CHECK(o.image_height >= 0 && o.image_width >= 0, "loader for ", o.path,
             ": image size must be >= 0 (0 = the dataset's), got ", o.image_height, "x",
             o.image_width);
  VMOE_CHECK(o.mixup_alpha >= 0, "loader for ", o.path, ": mixup_alpha must be >= 0, got ",
             o.mixup_alpha);
  s.info = inspect_dataset(o.path);
  const int64_t n = s.info.size;
  const bool resized = (o.image_height > 0 && o.image_height != s.info.height) ||
                       (o.image_width > 0 && o.image_width != s.info.width);
  VMOE_CHECK(!resized || s.info.encoded, "loader for ", o.path, ": images are stored raw at ",
             s.info.height, "x", s.info.width, "; only encoded (JPEG/PNG) datasets are resized to ",
             o.image_height, "x", o.image_width, " on the fly");
  if (o.training && o.mixup_alpha > 0) {
    VMOE_CHECK(s.info.multi_label, "loader for ", o.path,
               ": mixup needs multi-label data (soft targets for the sigmoid loss)");
    VMOE_CHECK((o.batch_size / o.world) % 2 == 0, "loader for ", o.path,
               ": mixup pairs rows 2i and 2i+1, so each rank needs an even number of rows; got ",
               o.batch_size / o.world);
  }
  if (o.training) {
    VMOE_CHECK(o.batch_size <= n, "loader for ", o.path, ": batch_size ", o.batch_size,
               " is larger than the dataset (", n, " examples)");
    s.num_batches = n / o.batch_size;
  } else {
    for (int64_t row : o.rows) {
      VMOE_CHECK(row >= 0 && row < n, "loader for ", o.path, ": row ", row,
                 " is outside the dataset (", n, " examples)");
    }
    const int64_t count = o.rows.empty() ? n : static_cast<int64_t>(o.rows.size());
    s.num_batches = (count + o.batch_size - 1) / o.batch_size;
  }
  s.reader = std::make_unique<BatchReader>(o, s.info);
  s.next_step = o.start_step;
  if (o.prefetch > 0) s.thread = std::thread([&s] { s.run(); });
}

Loader::~Loader() {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.stop = true;
  }
  s.changed.notify_all();
  if (s.thread.joinable()) s.thread.join();
}

const DatasetInfo& Loader::info() const {
  return state_->info;
}

int64_t Loader::num_batches() const {
  return state_->num_batches;
}

int64_t Loader::bytes_read() const {
  return state_->reader->bytes_read();
}

bool Loader::next(Batch& out) {
  State& s = *state_;
  if (!s.thread.joinable()) {
    if (s.finished(s.next_step)) return false;
    s.reader->read(s.next_step, out);
    ++s.next_step;
    return true;
  }
  std::unique_lock<std::mutex> lock(s.mu);
  s.changed.wait(lock, [&] { return !s.queue.empty() || s.error || s.done; });
  if (!s.queue.empty()) {
    std::swap(out, s.queue.front());  // the caller's previous batch becomes a spare
    if (out.rows > 0 && s.spare.size() < 2) s.spare.push_back(std::move(s.queue.front()));
    s.queue.pop_front();
    s.changed.notify_all();
    return true;
  }
  if (s.error) std::rethrow_exception(s.error);
  return false;
}

}  // namespace vmoe
