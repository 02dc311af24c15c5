// One outbound connect, as a state machine with named steps:
//
//   resolve      the host part to an IPv4 address (ei is IPv4-only): a
//                literal at once, a name on libuv's pool
//   port_please  the peer's distribution port and versions from its host's
//                epmd (PORT_PLEASE2)
//   handshake    version 6 (OTP 23+): TCP connect and ei's handshake on a
//                worker thread; version 5 (OTP 21/22, highest version 5):
//                our own core on the loop (HandshakeDriver). Either way
//                bounded by connect_timeout, and a peer whose handshake name
//                differs from the one dialled is refused
//   done         the handshaken fd and what the peer announced go to the
//                callback (the node adopts it)
//
// connect_timeout bounds the whole dial from start(): resolving, waiting
// for a dial thread (the pool is bounded), the epmd lookup and the
// handshake share one deadline, and each step gets only what is left of it.
// When it passes, the dial fails at once (Errc::timeout) with a message
// naming the step that ran out ("resolving HOST took longer than N ms",
// "waited M ms for a dial thread", ...). A name lookup still running then
// cannot be stopped (getaddrinfo is not cancellable once on a thread): its
// result is freed and ignored when it comes; a queued one is cancelled. A
// version 6 handshake not yet started is dropped from the queue; one
// running ends by the same deadline and its socket is closed.
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

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "common/uv_handle.hpp"
#include "dial_pool.hpp"
#include "dist/node.hpp"
#include "epmd_client/client.hpp"
#include "handshake_driver.hpp"

namespace beamlink::dist {

class Dialer {
 public:
  enum class Step { resolve, port_please, handshake, done };
  using Done = std::function<void(Result<DialedPeer> peer)>;
  // A version 6 handshake job, shared with its dial thread (internal).
  struct JobState {
    std::atomic<int> state{0};             // 0 queued, 1 running, 2 abandoned (deadline)
    std::atomic<std::int64_t> started{0};  // steady_clock ticks when it began to run
  };

  // `ec` (the identity with poll_socket_callbacks) is copied for the dial
  // thread. The client and the pool must outlive the Dialer.
  Dialer(uv_loop_t* loop, epmd_client::Client& epmd, DialPool& pool, const ei_cnode& ec,
         const NodeConfig& config, std::string peer, Done done);
  ~Dialer();
  Dialer(const Dialer&) = delete;
  Dialer& operator=(const Dialer&) = delete;

  void start();
  Step step() const { return step_; }
  const std::string& peer() const { return peer_; }

 private:
  void resolve();
  void port_please(in_addr addr);
  void handshake(in_addr addr, std::uint16_t port);
  void handshake_v5(in_addr addr, std::uint16_t port);
  void on_deadline();
  // The error for connect_timeout running out during the current step.
  Error deadline_error(bool queued) const;
  // What is left of connect_timeout (at least 1 ms).
  std::chrono::milliseconds remaining() const;
  void succeed(DialedPeer p);
  // The one place a failure is reported.
  void fail(Error why);

  uv_loop_t* loop_;
  epmd_client::Client& epmd_;
  DialPool& pool_;
  ei_cnode ec_;
  std::uint16_t epmd_port_;
  std::chrono::milliseconds timeout_;
  std::string our_name_;
  std::string cookie_;
  std::string peer_;
  std::string alive_name_;
  std::string host_;
  Done done_;
  Step step_ = Step::resolve;
  std::chrono::steady_clock::time_point deadline_;
  UvHandle<uv_timer_t> timer_;     // connect_timeout from start()
  uv_req_t* resolving_ = nullptr;  // the getaddrinfo request while it runs
  in_addr addr_{};                 // resolved
  std::uint16_t port_ = 0;         // from epmd
  std::shared_ptr<JobState> job_state_;
  std::chrono::steady_clock::time_point queued_at_;  // when that job was submitted
  std::unique_ptr<HandshakeDriver> driver_;          // version 5
  Liveness alive_;
};

}  // namespace beamlink::dist
