// The accepting side of the distribution handshake (recv_name, send_status,
// send_challenge, recv_challenge_reply, send_challenge_ack), run by ei on
// worker threads blocked on our listen socket.
#include <arpa/inet.h>
#include <ei.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "handshake.hpp"

namespace beamlink::cnode {

HandshakeAcceptor::HandshakeAcceptor(const ei_cnode& ec, int listen_fd, int threads,
                                     unsigned timeout_ms, Callback cb)
    : ec_(ec),
      listen_fd_(listen_fd),
      threads_(threads),
      timeout_ms_(timeout_ms),
      cb_(std::move(cb)) {}

HandshakeAcceptor::~HandshakeAcceptor() {
  stop();
}

void HandshakeAcceptor::start() {
  for (int i = 0; i < threads_; ++i) workers_.emplace_back([this] { run(); });
}

void HandshakeAcceptor::stop() {
  if (workers_.empty()) return;
  stopping_ = true;
  // Wakes threads blocked in select()/accept() on the listen socket.
  ::shutdown(listen_fd_, SHUT_RDWR);
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void HandshakeAcceptor::run() {
  ei_cnode local = ec_;
  std::chrono::milliseconds backoff{0};
  while (!stopping_) {
    ErlConnect conp{};
    errno = 0;
    // The timeout bounds both the wait for a connection and its handshake.
    int fd = ei_accept_tmo(&local, listen_fd_, &conp, timeout_ms_);
    int sys = errno;
    if (stopping_) {
      if (fd >= 0) ::close(fd);
      return;
    }
    if (fd >= 0) {
      backoff = std::chrono::milliseconds(0);
      cb_(Accepted{fd, conp.nodename, {}});
      continue;
    }
    int eerr = erl_errno;
    if (eerr == ETIMEDOUT) continue;  // no one connected in this period
    char ip[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, conp.ipadr, ip, sizeof ip);
    bool known_ip = ip[0] && std::strcmp(ip, "0.0.0.0") != 0;
    if (eerr == EIO && known_ip) {
      // The TCP connection was accepted and the handshake failed.
      cb_(Accepted{-1,
                   {},
                   make_error(Errc::handshake_failed,
                              std::string("inbound handshake from ") + ip +
                                  " failed: the peer sent a wrong challenge reply (its cookie "
                                  "differs), spoke an unsupported version, closed early, or is "
                                  "not an Erlang node",
                              eerr)});
      continue;
    }
    // accept() itself failed (out of descriptors or memory, ...): back off
    // instead of spinning, and say so.
    int why = sys ? sys : eerr;
    cb_(Accepted{-1,
                 {},
                 make_error(Errc::io_error,
                            std::string("accepting a distribution connection failed: ") +
                                std::strerror(why) + " (retrying)",
                            why)});
    backoff = std::min(std::max(backoff * 2, std::chrono::milliseconds(50)),
                       std::chrono::milliseconds(2000));
    std::this_thread::sleep_for(backoff);  // a worker thread's retry pause, not a test sync
  }
}

}  // namespace beamlink::cnode
