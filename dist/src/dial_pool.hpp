// A bounded set of dial threads with a queue, for ei's blocking outbound
// handshakes (version 6). At most `threads` handshakes run at once; the rest
// wait in the queue, so a burst of connects never grows the thread count,
// and none of libuv's shared pool (DNS, files) is held by a slow peer.
//
// Each job has three parts: `run` on a dial thread, then `complete` on the
// loop (woken through a uv_async_t), or `discard` on the dial thread instead
// when the pool was destroyed meanwhile (to close what `run` opened). Jobs
// still queued when the pool is destroyed are dropped without running.
//
// Thread: construct, submit and destroy on the loop's thread. Destroying the
// pool returns at once: a thread inside a job finishes it (bounded by the
// job's own timeout), discards its result and ends.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>

#include "common/result.hpp"
#include "common/uv_handle.hpp"

namespace beamlink::dist {

class DialPool {
 public:
  struct Job {
    std::function<void()> run;       // dial thread
    std::function<void()> complete;  // loop thread, after run
    std::function<void()> discard;   // dial thread, after run, when the pool is gone
  };

  DialPool(uv_loop_t* loop, int threads);
  ~DialPool();
  DialPool(const DialPool&) = delete;
  DialPool& operator=(const DialPool&) = delete;

  // Queues a job; fails (and drops it) only when the loop handle or a thread
  // cannot be created.
  [[nodiscard]] Result<void> submit(Job job);
  int threads() const { return threads_; }

 private:
  struct Shared;
  static void worker(const std::shared_ptr<Shared>& shared);
  void drain();  // on the loop: run the completions

  uv_loop_t* loop_;
  int threads_;
  int started_ = 0;
  std::shared_ptr<Shared> shared_;
  UvHandle<uv_async_t> async_;
};

}  // namespace beamlink::dist
