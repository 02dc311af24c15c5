// One TCP exchange with an epmd: connect, send one request, report what comes
// back, with a deadline. Private to epmd_client; Client and Registration are
// built on it.
//
// A Link is owned by a std::unique_ptr and owns its uv_tcp_t and uv_timer_t
// as UvHandles: destroying it closes both (libuv frees them in the close
// callbacks) and cancels everything, with no further callback. Its owner may
// destroy it at any time, also from inside on_data and on_end: the Link
// calls them through a copy and touches nothing of itself afterwards.
// Loop thread only.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "common/result.hpp"
#include "common/uv_handle.hpp"
#include "epmd_client/endpoint.hpp"

namespace beamlink::epmd_client::detail {

class Link {
 public:
  struct Callbacks {
    // Bytes as they arrive. May destroy the Link.
    std::function<void(std::span<const char>)> on_data;
    // The link ended by itself, and its handles are already closing:
    // connect or write failure, read error, end of stream
    // (Errc::connection_closed with source UV_EOF), or the deadline
    // (Errc::timeout). Called at most once; may destroy the Link.
    std::function<void(Error)> on_end;
  };

  // Starts connecting and returns at once; never calls back from inside.
  // An invalid host, or a connect that fails synchronously, is reported
  // through on_end on a later loop iteration. `timeout` bounds everything up
  // to the caller's stop_timer() (or to the end); 0 disables it.
  static std::unique_ptr<Link> open(uv_loop_t* loop, const Endpoint& ep, std::string request,
                                    std::chrono::milliseconds timeout, Callbacks cbs);
  // A link that connects nowhere and reports `error` through on_end on a
  // later loop iteration: how callers defer their own argument errors.
  static std::unique_ptr<Link> open_failed(uv_loop_t* loop, const Endpoint& ep, Error error,
                                           Callbacks cbs);

  // Closes the handles: no more callbacks.
  ~Link() = default;
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // The answer arrived: the connection may stay open without a deadline.
  void stop_timer() noexcept;

  const Endpoint& endpoint() const { return ep_; }

 private:
  Link(uv_loop_t* loop, Endpoint ep, std::string request, std::chrono::milliseconds timeout,
       Callbacks cbs);

  void start() noexcept;
  void defer_error(Error e) noexcept;  // on_end(e) on a later loop iteration
  void fail(Error e) noexcept;         // closes the handles, then on_end(e)
  void connected(int status) noexcept;
  Error connect_error(int status) const;

  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_timer(uv_timer_t* t) noexcept;

  uv_loop_t* loop_;
  Endpoint ep_;
  std::string request_;  // copied into the write request when connected
  std::chrono::milliseconds timeout_;
  Callbacks cbs_;
  UvHandle<uv_tcp_t> tcp_;
  UvHandle<uv_timer_t> timer_;
  Error deferred_;  // reported by the timer when set before connecting
  char buf_[4096];
};

}  // namespace beamlink::epmd_client::detail
