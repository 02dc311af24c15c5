#include "dial_pool.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace beamlink::dist {

struct DialPool::Shared {
  std::mutex m;
  std::condition_variable cv;
  std::deque<Job> queue;      // waiting to run
  std::vector<Job> finished;  // ran; their completions wait for the loop
  bool stopped = false;
  uv_async_t* async = nullptr;  // valid while !stopped
};

DialPool::DialPool(uv_loop_t* loop, int threads)
    : loop_(loop), threads_(threads < 1 ? 1 : threads), shared_(std::make_shared<Shared>()) {}

DialPool::~DialPool() {
  std::vector<Job> ran;  // finished but not yet completed on the loop
  {
    std::lock_guard lock(shared_->m);
    shared_->stopped = true;
    shared_->async = nullptr;
    shared_->queue.clear();  // never ran: nothing to release
    ran.swap(shared_->finished);
  }
  shared_->cv.notify_all();
  async_.reset();
  // What they made (a handshaken socket) is released as a job that finishes
  // after the pool is gone releases it.
  for (auto& j : ran)
    if (j.discard) j.discard();
}

Result<void> DialPool::submit(Job job) {
  if (!async_) {
    int rc = async_.init(loop_, this, uv_async_init, [](uv_async_t* a) {
      if (auto* self = static_cast<DialPool*>(a->data)) self->drain();
    });
    if (rc != 0)
      return uv_error(Errc::io_error,
                      std::string("cannot create the dial pool's wakeup: ") + uv_strerror(rc), rc);
    uv_unref(async_.handle());
    std::lock_guard lock(shared_->m);
    shared_->async = async_.get();
  }
  {
    std::lock_guard lock(shared_->m);
    shared_->queue.push_back(std::move(job));
  }
  if (outstanding_++ == 0) uv_ref(async_.handle());
  // Threads start on demand, up to the bound.
  if (started_ < threads_) {
    try {
      std::thread(worker, shared_).detach();
      ++started_;
    } catch (const std::system_error& e) {
      if (started_ == 0) {
        std::lock_guard lock(shared_->m);
        shared_->queue.clear();
        outstanding_ = 0;
        uv_unref(async_.handle());
        return make_error(Errc::io_error, std::string("cannot start a dial thread: ") + e.what());
      }
    }
  }
  shared_->cv.notify_one();
  return {};
}

void DialPool::worker(const std::shared_ptr<Shared>& shared) {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(shared->m);
      shared->cv.wait(lock, [&] { return shared->stopped || !shared->queue.empty(); });
      if (shared->stopped) return;
      job = std::move(shared->queue.front());
      shared->queue.pop_front();
    }
    if (job.run) job.run();
    std::unique_lock lock(shared->m);
    if (shared->stopped) {
      lock.unlock();
      if (job.discard) job.discard();
      continue;  // ends at the next wait
    }
    shared->finished.push_back(std::move(job));
    uv_async_send(shared->async);  // under the lock: the handle is not closed meanwhile
  }
}

void DialPool::drain() {
  std::vector<Job> done;
  {
    std::lock_guard lock(shared_->m);
    done.swap(shared_->finished);
  }
  // A completion may destroy this pool (stopping the node): the rest are
  // then dropped, as the contract says for a destroyed pool.
  outstanding_ -= static_cast<int>(done.size());
  if (outstanding_ <= 0) {
    outstanding_ = 0;
    uv_unref(async_.handle());
  }
  auto shared = shared_;
  for (auto& j : done) {
    {
      std::lock_guard lock(shared->m);
      if (shared->stopped) {
        if (j.discard) j.discard();
        continue;
      }
    }
    if (j.complete) j.complete();
  }
}

}  // namespace beamlink::dist
