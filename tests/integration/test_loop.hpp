// A libuv loop run on the test's own thread: run_until(cond, timeout) with an
// unref'd watchdog that fails the test instead of hanging, and close() that
// reports uv_loop_close()'s result.
#pragma once

#include <doctest/doctest.h>
#include <uv.h>

#include <chrono>
#include <functional>

namespace beamlink::test {

using namespace std::chrono_literals;

class TestLoop {
 public:
  explicit TestLoop(std::chrono::milliseconds watchdog = 30s) {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &watchdog_);
    uv_timer_init(&loop_, &deadline_);
    watchdog_.data = this;
    deadline_.data = this;
    uv_timer_start(
        &watchdog_,
        [](uv_timer_t* t) {
          auto* self = static_cast<TestLoop*>(t->data);
          self->expired_ = true;
          uv_stop(&self->loop_);
        },
        static_cast<uint64_t>(watchdog.count()), 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&watchdog_));
  }
  ~TestLoop() {
    if (!closed_) (void)close();
  }

  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `cond` holds or `timeout` passes (or the watchdog
  // fires, which fails the test). Returns cond().
  bool run_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 10s) {
    timed_out_ = false;
    uv_timer_start(
        &deadline_, [](uv_timer_t* t) { static_cast<TestLoop*>(t->data)->timed_out_ = true; },
        static_cast<uint64_t>(timeout.count()), 0);
    while (!cond() && !timed_out_ && !expired_) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&deadline_);
    CHECK_MESSAGE(!expired_, "watchdog: the test ran too long");
    return cond();
  }
  // Runs the loop for `period` to observe that nothing (more) happens.
  void run_for(std::chrono::milliseconds period) {
    (void)run_until([] { return false; }, period);
  }

  // Processes what is left (close callbacks), closes the timers, closes the loop.
  int close() {
    closed_ = true;
    uv_run(&loop_, UV_RUN_NOWAIT);
    uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&deadline_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    return uv_loop_close(&loop_);
  }

 private:
  uv_loop_t loop_{};
  uv_timer_t watchdog_{};
  uv_timer_t deadline_{};
  bool timed_out_ = false;
  bool expired_ = false;
  bool closed_ = false;
};

}  // namespace beamlink::test
