// Two libuv idioms used across the libraries.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace beamlink {

// Closes a handle allocated with `new` and frees it in the close callback,
// never before (libuv requires the memory to live until then).
template <class Handle>
void close_and_delete(Handle* h) {
  uv_close(reinterpret_cast<uv_handle_t*>(h),
           [](uv_handle_t* x) { delete reinterpret_cast<Handle*>(x); });
}

// Runs fn on a later loop iteration (at least delay_ms later) unless `alive`
// has expired by then: how an API reports a result without calling back
// from inside the call, or tries again after a pause. An empty weak_ptr
// (never set) means "no owner to outlive": fn always runs.
inline void defer(uv_loop_t* loop, std::weak_ptr<int> alive, std::function<void()> fn,
                  std::uint64_t delay_ms = 0) {
  struct Ctx {
    std::weak_ptr<int> alive;
    bool guarded;
    std::function<void()> fn;
  };
  // A weak_ptr that never had an owner is equivalent to a default one.
  const std::weak_ptr<int> none;
  bool guarded = alive.owner_before(none) || none.owner_before(alive);
  auto* t = new uv_timer_t;
  uv_timer_init(loop, t);
  t->data = new Ctx{std::move(alive), guarded, std::move(fn)};
  uv_timer_start(
      t,
      [](uv_timer_t* timer) {
        std::unique_ptr<Ctx> ctx(static_cast<Ctx*>(timer->data));
        close_and_delete(timer);
        if (!ctx->guarded || !ctx->alive.expired()) ctx->fn();
      },
      delay_ms, 0);
}

}  // namespace beamlink
