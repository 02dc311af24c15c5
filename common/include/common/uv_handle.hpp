// One way to own a libuv handle on the loop.
//
// UvHandle<H> owns one heap-allocated handle (uv_timer_t, uv_tcp_t, ...).
// Destroying it (or reset()) closes the handle; the memory is freed in the
// close callback, never before, as libuv requires. Just before uv_close the
// handle's `data` is set to nullptr: a callback that libuv still runs for
// that handle after its owner is gone (a write request cancelled by the close
// completes with UV_ECANCELED) finds `handle->data == nullptr` and must touch
// nothing else. Owners put `this` in `data` and never `delete` themselves.
//
// Thread: the loop's thread only.
#pragma once

#include <uv.h>

#include <cassert>
#include <utility>

namespace beamlink {

template <class H>
class UvHandle {
 public:
  UvHandle() noexcept = default;
  ~UvHandle() { reset(); }
  UvHandle(UvHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  UvHandle& operator=(UvHandle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  // Allocates a handle and runs `init(loop, handle, args...)` (uv_timer_init,
  // uv_tcp_init, uv_check_init, uv_async_init with its callback, ...), then
  // sets its data to `data`. Returns init's status; on failure nothing is
  // held (the handle was never initialised, so it is freed at once). Closes
  // the handle held before, if any.
  template <class Init, class... Args>
  int init(uv_loop_t* loop, void* data, Init&& init_fn, Args&&... args) {
    reset();
    auto* h = new H;
    int rc = std::forward<Init>(init_fn)(loop, h, std::forward<Args>(args)...);
    if (rc != 0) {
      delete h;
      return rc;
    }
    h->data = data;
    h_ = h;
    return 0;
  }

  H* get() const noexcept { return h_; }
  H* operator->() const noexcept {
    assert(h_);
    return h_;
  }
  uv_handle_t* handle() const noexcept { return reinterpret_cast<uv_handle_t*>(h_); }
  uv_stream_t* stream() const noexcept { return reinterpret_cast<uv_stream_t*>(h_); }
  explicit operator bool() const noexcept { return h_ != nullptr; }

  // Closes the handle now (data cleared first) and frees it in the close
  // callback. Idempotent.
  void reset() noexcept {
    if (!h_) return;
    H* h = std::exchange(h_, nullptr);
    h->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(h),
             [](uv_handle_t* x) { delete reinterpret_cast<H*>(x); });
  }

 private:
  H* h_ = nullptr;
};

}  // namespace beamlink
