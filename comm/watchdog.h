// The collective watchdog: a rank waiting in a collective for a peer that
// never comes (a stopped or frozen process, a hung GPU, a dead node) would
// wait forever; the watchdog ends the job instead, with a message naming the
// collective, the step and the ranks that did not arrive.
//
// The communicators mark each blocking collective (CollectiveScope), and the
// CUDA backend each host wait for the GPU, which is where a stuck NCCL
// collective shows (through core's WaitObserver, wired by the launcher); a
// thread checks once a second whether the current one has lasted longer than
// the timeout. To say who is missing, every rank's thread also writes a
// heartbeat file into a folder all ranks share (the run directory): its pid,
// the time, its step and how many collectives it has finished. A rank whose
// heartbeat is stale is stopped or dead; one that is alive but behind has
// not reached the collective. The process then exits with status 1 (Open MPI
// ends the other ranks); it makes no MPI call, so it works whatever the
// stuck rank is doing.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

namespace vmoe {

class CollectiveWatchdog {
 public:
  static CollectiveWatchdog& instance();

  // Starts watching: collectives longer than `timeout_s` end the job (0:
  // off). `heartbeat_dir` (created if missing; empty: no heartbeats, and the
  // message cannot name the missing ranks). `program` prefixes the message.
  void start(double timeout_s, int rank, int size, const std::string& heartbeat_dir,
             const std::string& program);
  void stop();
  bool running() const { return thread_.joinable(); }
  void set_step(int64_t step) { step_.store(step); }

  // The calling (main) thread waits in a collective named `what` until
  // leave(); `scale` stretches the timeout for waits that are long by nature
  // (a checkpoint write).
  void enter(const char* what, double scale = 1);
  void leave();

 private:
  CollectiveWatchdog() = default;
  ~CollectiveWatchdog();
  void run();
  void write_heartbeat();
  [[noreturn]] void fire(const char* what, double waited);

  double timeout_s_ = 0;
  int rank_ = 0, size_ = 1;
  std::string dir_, program_;
  std::atomic<bool> stop_{false};
  std::atomic<const char*> what_{nullptr};
  std::atomic<int64_t> entered_ns_{0};  // steady clock; 0: not in a collective
  std::atomic<double> scale_{1};
  std::atomic<int64_t> finished_{0};  // collectives completed
  std::atomic<int64_t> step_{0};
  int depth_ = 0;  // nested scopes (only the calling thread touches it)
  std::thread thread_;
};

// Marks a blocking collective for the watchdog (a no-op when it is off).
class CollectiveScope {
 public:
  explicit CollectiveScope(const char* what, double scale = 1) {
    CollectiveWatchdog::instance().enter(what, scale);
  }
  ~CollectiveScope() { CollectiveWatchdog::instance().leave(); }
  CollectiveScope(const CollectiveScope&) = delete;
  CollectiveScope& operator=(const CollectiveScope&) = delete;
};

// Watches while it lives: started after the run directory is known, stopped
// (heartbeat removed) however the program leaves.
class WatchdogSession {
 public:
  WatchdogSession(double timeout_s, int rank, int size, const std::string& heartbeat_dir,
                  const std::string& program) {
    CollectiveWatchdog::instance().start(timeout_s, rank, size, heartbeat_dir, program);
  }
  ~WatchdogSession() { CollectiveWatchdog::instance().stop(); }
  WatchdogSession(const WatchdogSession&) = delete;
  WatchdogSession& operator=(const WatchdogSession&) = delete;
};

}  // namespace vmoe
