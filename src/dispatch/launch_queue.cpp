#include "dispatch/launch_queue.h"

#include <boost/asio/post.hpp>

#include "common/thread_step.h"

namespace tamaya::dispatch {

LaunchQueue::LaunchQueue(boost::asio::io_context& io, sandbox::Launcher& launcher, int threads)
    : io_(io), launcher_(launcher) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

LaunchQueue::~LaunchQueue() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    jobs_.clear();
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void LaunchQueue::submit(sandbox::LaunchSpec spec, Done done) {
  if (threads_.empty()) {  // launched right here, on the event loop, as before the queue
    deliver(launch(spec), std::move(done));
    return;
  }
  {
    std::lock_guard lock(mu_);
    jobs_.push_back({std::move(spec), std::move(done)});
  }
  wake_.notify_one();
}

void LaunchQueue::run() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    deliver(launch(job.spec), std::move(job.done));
  }
}

Result<sandbox::Process> LaunchQueue::launch(const sandbox::LaunchSpec& spec) {
  return step_result("a launch", [&] { return launcher_.launch(spec); });
}

void LaunchQueue::deliver(Result<sandbox::Process> launched, Done done) {
  auto result = std::make_shared<Result<sandbox::Process>>(std::move(launched));
  boost::asio::post(io_,
                    [alive = std::weak_ptr<int>(alive_), done = std::move(done), result]() mutable {
                      if (alive.expired()) {
                        if (result->ok()) sandbox::terminate(**result);
                        return;
                      }
                      done(std::move(*result));
                    });
}

}  // namespace tamaya::dispatch
