#include "comm/watchdog.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace vmoe {
namespace {

namespace fs = std::filesystem;

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Wall clock: heartbeats are compared across processes (and nodes).
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

constexpr double kStaleSeconds = 3;  // heartbeats come every second

}  // namespace

CollectiveWatchdog& CollectiveWatchdog::instance() {
  static CollectiveWatchdog watchdog;
  return watchdog;
}

CollectiveWatchdog::~CollectiveWatchdog() {
  stop();
}

void CollectiveWatchdog::start(double timeout_s, int rank, int size,
                               const std::string& heartbeat_dir, const std::string& program) {
  stop();
  if (timeout_s <= 0) return;
  timeout_s_ = timeout_s;
  rank_ = rank;
  size_ = size;
  program_ = program;
  dir_ = heartbeat_dir;
  if (!dir_.empty()) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) dir_.clear();  // watch without heartbeats
  }
  stop_ = false;
  write_heartbeat();
  thread_ = std::thread([this] { run(); });
}

void CollectiveWatchdog::stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  thread_.join();
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove(fs::path(dir_) / ("rank-" + std::to_string(rank_)), ec);
    fs::remove(dir_, ec);  // the last rank out removes the folder (fails while others remain)
  }
}

void CollectiveWatchdog::enter(const char* what, double scale) {
  if (depth_++ > 0) return;  // a wait inside a wait: the outer one counts
  what_.store(what);
  scale_.store(scale);
  entered_ns_.store(steady_ns());
}

void CollectiveWatchdog::leave() {
  if (--depth_ > 0) return;
  entered_ns_.store(0);
  finished_.fetch_add(1);
}

void CollectiveWatchdog::write_heartbeat() {
  if (dir_.empty()) return;
  const fs::path file = fs::path(dir_) / ("rank-" + std::to_string(rank_));
  const std::string tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    const char* what = entered_ns_.load() != 0 ? what_.load() : nullptr;
    char line[256];
    std::snprintf(line, sizeof line, "%d %.3f %lld %lld %s\n", static_cast<int>(::getpid()),
                  wall_seconds(), static_cast<long long>(step_.load()),
                  static_cast<long long>(finished_.load()), what != nullptr ? what : "-");
    out << line;
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
}

void CollectiveWatchdog::run() {
  int64_t last = steady_ns();
  while (!stop_) {
    for (int i = 0; i < 10 && !stop_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stop_) break;
    write_heartbeat();
    // A second that lasted much longer: this process was stopped itself (it
    // is the rank the others wait for), so its own wait says nothing.
    const int64_t now = steady_ns();
    const bool was_stopped = static_cast<double>(now - last) * 1e-9 > kStaleSeconds;
    last = now;
    int64_t entered = entered_ns_.load();
    if (entered == 0) continue;
    if (was_stopped) {
      entered_ns_.compare_exchange_strong(entered, now);  // start its wait afresh
      continue;
    }
    const double waited = static_cast<double>(steady_ns() - entered) * 1e-9;
    if (waited > timeout_s_ * scale_.load()) fire(what_.load(), waited);
  }
}

void CollectiveWatchdog::fire(const char* what, double waited) {
  // Who did not arrive: every other rank's heartbeat.
  std::string missing;
  const int64_t mine = finished_.load();
  for (int r = 0; r < size_ && !dir_.empty(); ++r) {
    if (r == rank_) continue;
    std::ifstream in(fs::path(dir_) / ("rank-" + std::to_string(r)));
    int pid = 0;
    double at = 0;
    long long step = 0, finished = 0;
    std::string where;
    char line[320];
    const bool read = static_cast<bool>(in >> pid >> at >> step >> finished) &&
                      static_cast<bool>(std::getline(in >> std::ws, where));
    if (!read) {
      std::snprintf(line, sizeof line, "; rank %d: no heartbeat in %s (not a shared folder?)", r,
                    dir_.c_str());
    } else if (wall_seconds() - at > kStaleSeconds) {
      std::snprintf(line, sizeof line,
                    "; rank %d (pid %d): silent for %.0f s (stopped, frozen or dead), last at "
                    "step %lld",
                    r, pid, wall_seconds() - at, step);
    } else if (finished < mine || (finished == mine && where == "-")) {
      std::snprintf(line, sizeof line,
                    "; rank %d (pid %d): alive but has not arrived (step %lld, %s)", r, pid, step,
                    where == "-" ? "computing" : ("in " + where).c_str());
    } else {
      continue;  // waiting with us
    }
    missing += line;
  }
  if (dir_.empty()) {
    missing = "; the ranks that did not arrive are unknown (no heartbeat folder)";
  } else if (missing.empty()) {
    missing = "; every rank is waiting in it (the network or a device is stuck)";
  }
  std::fprintf(
      stderr,
      "%s: error (rank %d of %d): waited %.0f s in %s at step %lld, longer than "
      "--collective_timeout=%g%s%s\n",
      program_.c_str(), rank_, size_, waited, what != nullptr ? what : "a collective",
      static_cast<long long>(step_.load()), timeout_s_,
      scale_.load() != 1 ? (" x" + std::to_string(static_cast<int>(scale_.load()))).c_str() : "",
      missing.c_str());
  std::fflush(stderr);
  std::_Exit(1);  // Open MPI ends the other ranks; no MPI call can be trusted now
}

}  // namespace vmoe
