// The listening side of the node: the distribution port (the first free one
// of the range, as inet_dist_listen_min/max) and the hand-off of inbound
// handshakes from ei's acceptor threads to the loop.
//
// Thread: construct, start, stop and destroy on the loop's thread; the
// acceptor threads only queue what they accepted and wake the loop.
#pragma once

#include <ei.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "common/result.hpp"
#include "common/uv_handle.hpp"
#include "handshake.hpp"

namespace beamlink::dist {

// Binds and listens on the first free port of [port_min, port_max] (port 0:
// any, read back). Returns the socket and its port; already_exists, naming
// the range and what to do, when none is free.
Result<std::pair<int, std::uint16_t>> listen_in_range(std::uint16_t port_min,
                                                      std::uint16_t port_max);

class Listener {
 public:
  // Called on the loop for each inbound handshake: a connected fd and the
  // peer's name, or the failure (fd < 0).
  using Accepted = std::function<void(HandshakeAcceptor::Accepted)>;

  explicit Listener(uv_loop_t* loop) : loop_(loop) {}
  ~Listener() { stop(); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Takes ownership of listen_fd (also on failure) and starts the acceptor
  // threads. `on_accepted` is never called from inside start or after stop.
  Result<void> start(const ei_cnode& ec, int listen_fd, int threads, unsigned timeout_ms,
                     Accepted on_accepted);
  // Stops the acceptors (they own the listen socket) and closes the fds of
  // handshakes not yet handed over. Idempotent.
  void stop();

 private:
  struct Inbox {
    std::mutex mutex;
    std::deque<HandshakeAcceptor::Accepted> items;
  };
  uv_loop_t* loop_;
  Accepted on_accepted_;
  std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  UvHandle<uv_async_t> wake_;  // data: this
  std::unique_ptr<HandshakeAcceptor> acceptor_;
  bool stopped_ = false;
};

}  // namespace beamlink::dist
