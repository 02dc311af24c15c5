// One outbound connect, as a state machine with named steps:
//
//   resolve      the host part to an IPv4 address (ei is IPv4-only): a
//                literal at once, a name on libuv's pool
//   port_please  the peer's distribution port from its host's epmd
//                (PORT_PLEASE2; a peer older than version 6 is refused)
//   handshake    TCP connect and ei's handshake on a worker thread, bounded
//                by connect_timeout
//   done         the handshaken fd goes to the callback (the node adopts it)
//
// A failure at any step is reported in one place, naming the peer and the
// step. Thread: the loop's. The callback is called exactly once, later,
// never from inside start(); destroying the Dialer drops it uncalled (a
// handshake still running on its worker closes its fd when it ends). The
// Dialer touches nothing of its own after calling it, so the callback may
// destroy it.
#pragma once

#include <ei.h>
#include <netinet/in.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "dist/node.hpp"
#include "epmd_client/client.hpp"

namespace beamlink::dist {

class Dialer {
 public:
  enum class Step { resolve, port_please, handshake, done };
  using Done = std::function<void(Result<int> fd)>;

  // `ec` is copied for the worker thread. The client must outlive the Dialer.
  Dialer(uv_loop_t* loop, epmd_client::Client& epmd, const ei_cnode& ec, const NodeConfig& config,
         std::string peer, Done done);
  Dialer(const Dialer&) = delete;
  Dialer& operator=(const Dialer&) = delete;

  void start();
  Step step() const { return step_; }
  const std::string& peer() const { return peer_; }

 private:
  void resolve();
  void port_please(in_addr addr);
  void handshake(in_addr addr, std::uint16_t port);
  void succeed(int fd);
  // The one place a failure is reported.
  void fail(Error why);

  uv_loop_t* loop_;
  epmd_client::Client& epmd_;
  ei_cnode ec_;
  std::uint16_t epmd_port_;
  std::chrono::milliseconds timeout_;
  std::string peer_;
  std::string alive_name_;
  std::string host_;
  Done done_;
  Step step_ = Step::resolve;
  Liveness alive_;
};

}  // namespace beamlink::dist
