// Runs a libuv loop on its own thread so a test can drive real erl nodes
// (blocking) while a beamlink Node lives on the loop. call() runs a function
// on the loop thread and waits for its result; the destructor runs the loop
// to completion and checks uv_loop_close() == 0.
#pragma once

#include <doctest/doctest.h>
#include <uv.h>

#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>

namespace beamlink::test {

class LoopThread {
 public:
  LoopThread() {
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &async_, [](uv_async_t* a) {
      auto* self = static_cast<LoopThread*>(a->data);
      std::deque<std::function<void()>> q;
      {
        std::lock_guard lock(self->m_);
        q.swap(self->q_);
      }
      for (auto& f : q) f();
      if (self->closing_ && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&self->async_)))
        uv_close(reinterpret_cast<uv_handle_t*>(&self->async_), nullptr);
    });
    async_.data = this;
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~LoopThread() {
    post([this] { closing_ = true; });
    thread_.join();
    // Anything still open (handles being closed) finishes here.
    uv_run(&loop_, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop_) == 0);
  }
  uv_loop_t* loop() { return &loop_; }

  void post(std::function<void()> f) {
    {
      std::lock_guard lock(m_);
      q_.push_back(std::move(f));
    }
    uv_async_send(&async_);
  }

  template <class F>
  auto call(F f) -> std::invoke_result_t<F> {
    using R = std::invoke_result_t<F>;
    std::promise<R> p;
    auto fut = p.get_future();
    post([&] {
      if constexpr (std::is_void_v<R>) {
        f();
        p.set_value();
      } else {
        p.set_value(f());
      }
    });
    return fut.get();
  }

 private:
  uv_loop_t loop_;
  uv_async_t async_;
  std::thread thread_;
  std::mutex m_;
  std::deque<std::function<void()>> q_;
  bool closing_ = false;
};

}  // namespace beamlink::test
