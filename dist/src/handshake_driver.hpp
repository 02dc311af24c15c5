// The initiating handshake on the loop: HandshakeInitiatorCore (no I/O)
// driven over a uv_tcp_t, with one deadline for the whole handshake (TCP
// connect included) and no thread. Used for version 5 peers (OTP 21/22),
// which ei in OTP 25 cannot reach.
//
// It reads at most HandshakeInitiatorCore::bytes_wanted() bytes at a time,
// so no byte of the peer's first frames is consumed: after the challenge ack
// the socket is handed over (a dup of its fd; the uv handle is closed) with
// everything after the handshake still unread.
//
// Thread: the loop's. The callback is called exactly once, later, never from
// inside start(); destroying the driver first drops it uncalled (the socket
// closes with it). The driver touches nothing of its own after calling it,
// so the callback may destroy it.
#pragma once

#include <netinet/in.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "common/uv_handle.hpp"
#include "dist/handshake_core.hpp"

namespace beamlink::dist {

// A finished outbound handshake: the socket and what the peer announced.
struct DialedPeer {
  int fd = -1;              // connected, handshaken, blocking mode unspecified
  int version = 6;          // the handshake version used
  std::uint64_t flags = 0;  // the peer's distribution flags
  std::string name;         // the name the peer gave in its challenge
  bool flags_known = true;  // false: assumed (ei does not report them)
};

class HandshakeDriver {
 public:
  using Done = std::function<void(Result<DialedPeer>)>;

  // `where` prefixes every error ("connecting to t1@127.0.0.1 at 127.0.0.1:9000").
  HandshakeDriver(uv_loop_t* loop, HandshakeInitiatorCore core, sockaddr_in addr,
                  std::chrono::milliseconds deadline, std::string where, Done done);
  ~HandshakeDriver();
  HandshakeDriver(const HandshakeDriver&) = delete;
  HandshakeDriver& operator=(const HandshakeDriver&) = delete;

  void start();
  const HandshakeInitiatorCore& core() const { return core_; }

 private:
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  void connected(int status);
  void send(std::string bytes);
  void check();  // done or failed: report
  void finish(Result<DialedPeer> r);

  uv_loop_t* loop_;
  HandshakeInitiatorCore core_;
  sockaddr_in addr_;
  std::chrono::milliseconds deadline_;
  std::string where_;
  Done done_;
  UvHandle<uv_tcp_t> tcp_;
  UvHandle<uv_timer_t> timer_;
  bool tcp_connected_ = false;
  bool finished_ = false;
  char buf_[HandshakeInitiatorCore::kMaxMessage + 2];
  Liveness alive_;
};

}  // namespace beamlink::dist
