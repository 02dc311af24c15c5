// Two libuv idioms used across the libraries.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "common/signal.hpp"

namespace beamlink {

// Closes a handle allocated with `new` and frees it in the close callback,
// never before (libuv requires the memory to live until then).
template <class Handle>
void close_and_delete(Handle* h) {
  uv_close(reinterpret_cast<uv_handle_t*>(h),
           [](uv_handle_t* x) { delete reinterpret_cast<Handle*>(x); });
}

namespace detail {
inline void defer_impl(uv_loop_t* loop, bool guarded, Liveness::Watch alive,
                       std::function<void()> fn, std::uint64_t delay_ms) {
  struct Ctx {
    bool guarded;
    Liveness::Watch alive;
    std::function<void()> fn;
  };
  auto* t = new uv_timer_t;
  uv_timer_init(loop, t);
  t->data = new Ctx{guarded, std::move(alive), std::move(fn)};
  uv_timer_start(
      t,
      [](uv_timer_t* timer) {
        std::unique_ptr<Ctx> ctx(static_cast<Ctx*>(timer->data));
        close_and_delete(timer);
        if (!ctx->guarded || ctx->alive) ctx->fn();
      },
      delay_ms, 0);
}
}  // namespace detail

// Runs fn on a later loop iteration (at least delay_ms later) unless the
// owner watched by `alive` has gone by then: how an API reports a result
// without calling back from inside the call, or tries again after a pause.
inline void defer(uv_loop_t* loop, Liveness::Watch alive, std::function<void()> fn,
                  std::uint64_t delay_ms = 0) {
  detail::defer_impl(loop, true, std::move(alive), std::move(fn), delay_ms);
}

// The same for a callback with no owner to outlive: fn always runs (unless
// the loop is never run again).
inline void defer(uv_loop_t* loop, std::function<void()> fn, std::uint64_t delay_ms = 0) {
  detail::defer_impl(loop, false, {}, std::move(fn), delay_ms);
}

}  // namespace beamlink
