// Starts sandboxed processes on threads of their own, so the event loop never
// waits for one. A sandboxed launch takes milliseconds (namespaces, mounts,
// cgroups, a zygote's handshake): run on the loop, a burst of cold starts of
// one function stalled every other function's requests (48 Python cold
// starts: another function's p50 went from 0.7 ms to 210 ms for a second,
// see docs/performance.md). The threads live as long as the queue: a process
// gets SIGKILL when the thread that launched it ends (PR_SET_PDEATHSIG).
#pragma once

#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"
#include "sandbox/launcher.h"

namespace tamaya::dispatch {

class LaunchQueue {
 public:
  // Called on the io_context with the launch's outcome. Never called once
  // the queue is gone: a process launched by then is killed and released.
  using Done = std::function<void(Result<sandbox::Process>)>;

  // threads 0: each launch runs in submit(), on the caller's (the event
  // loop's) thread, as before the queue existed; kept for comparison
  // (bench/burst).
  LaunchQueue(boost::asio::io_context& io, sandbox::Launcher& launcher, int threads);
  LaunchQueue(const LaunchQueue&) = delete;
  LaunchQueue& operator=(const LaunchQueue&) = delete;
  // Drops the launches not started yet, waits for the running ones.
  ~LaunchQueue();

  void submit(sandbox::LaunchSpec spec, Done done);

 private:
  struct Job {
    sandbox::LaunchSpec spec;
    Done done;
  };
  void run();
  // The launcher's outcome; a bug that throws in it fails this launch only
  // (common/thread_step.h), not the thread that serves every function.
  Result<sandbox::Process> launch(const sandbox::LaunchSpec& spec);
  // Hands the outcome to `done` on the io_context (never from inside submit).
  void deliver(Result<sandbox::Process> launched, Done done);

  boost::asio::io_context& io_;
  sandbox::Launcher& launcher_;
  // Expires with the queue: completions posted to the loop check it first.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace tamaya::dispatch
