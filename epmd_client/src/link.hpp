// One TCP exchange with an epmd: connect, send one request, report what comes
// back, with a deadline. Private to epmd_client; Client and Registration are
// built on it.
//
// A Link owns its uv_tcp_t and uv_timer_t and frees itself after libuv has
// closed both (in the close callbacks), so its owner can drop it at any time:
// close() cancels it without any further callback. Loop thread only.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <span>
#include <string>

#include "common/result.hpp"
#include "epmd_client/endpoint.hpp"

namespace beamlink::epmd_client::detail {

class Link {
 public:
  struct Callbacks {
    // Bytes as they arrive. May call close().
    std::function<void(std::span<const char>)> on_data;
    // The link ended by itself and is already closing: connect or write
    // failure, read error, end of stream (Errc::connection_closed with
    // source UV_EOF), or the deadline (Errc::timeout). Called at most once,
    // never after close(); the Link must not be touched afterwards.
    std::function<void(Error)> on_end;
  };

  // Starts connecting and returns at once; never calls back from inside.
  // An invalid host, or a connect that fails synchronously, is reported
  // through on_end on a later loop iteration. `timeout` bounds everything up
  // to the caller's stop_timer() (or to the end); 0 disables it.
  static Link* open(uv_loop_t* loop, const Endpoint& ep, std::string request,
                    std::chrono::milliseconds timeout, Callbacks cbs);
  // A link that connects nowhere and reports `error` through on_end on a
  // later loop iteration: how callers defer their own argument errors.
  static Link* open_failed(uv_loop_t* loop, const Endpoint& ep, Error error, Callbacks cbs);

  // Cancels: no more callbacks. The memory goes once libuv has closed the
  // handles (on a later loop iteration). Safe to call more than once, and
  // from inside on_data and on_end (a no-op there: the link is already
  // closing); not after on_end has returned.
  void close() noexcept;

  // The answer arrived: the connection may stay open without a deadline.
  void stop_timer() noexcept;

  const Endpoint& endpoint() const { return ep_; }

  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

 private:
  Link(uv_loop_t* loop, Endpoint ep, std::string request, std::chrono::milliseconds timeout,
       Callbacks cbs);
  ~Link() = default;

  void start() noexcept;
  void fail(Error e) noexcept;  // closes, then on_end(e)
  Error connect_error(int status) const;

  static void on_connect(uv_connect_t* req, int status) noexcept;
  static void on_write(uv_write_t* req, int status) noexcept;
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_timer(uv_timer_t* t) noexcept;
  static void on_closed(uv_handle_t* h) noexcept;

  Endpoint ep_;
  std::string request_;  // lives until the write completes
  std::chrono::milliseconds timeout_;
  Callbacks cbs_;
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  Error deferred_;  // reported by the timer when set before connecting
  int open_handles_ = 0;
  bool closing_ = false;
  char buf_[4096];
};

}  // namespace beamlink::epmd_client::detail
