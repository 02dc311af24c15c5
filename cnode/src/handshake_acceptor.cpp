// The accepting side of the distribution handshake (recv_name, send_status,
// send_challenge, recv_challenge_reply, send_challenge_ack), run by ei on
// worker threads blocked on our listen socket.
#include <arpa/inet.h>
#include <ei.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
  while (!stopping_) {
    ErlConnect conp{};
    errno = 0;
    // The timeout bounds both the wait for a connection and its handshake.
    int fd = ei_accept_tmo(&local, listen_fd_, &conp, timeout_ms_);
    if (stopping_) {
      if (fd >= 0) ::close(fd);
      return;
    }
    if (fd >= 0) {
      cb_(Accepted{fd, conp.nodename, {}});
      continue;
    }
    int eerr = erl_errno;
    if (eerr == ETIMEDOUT) continue;  // no one connected in this period
    char ip[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, conp.ipadr, ip, sizeof ip);
    std::string from = (ip[0] && std::strcmp(ip, "0.0.0.0") != 0) ? std::string(" from ") + ip : "";
    cb_(Accepted{-1,
                 {},
                 make_error(Errc::handshake_failed,
                            "inbound handshake" + from +
                                " failed: the peer sent a wrong challenge reply (its cookie "
                                "differs from ours), an unsupported version, or closed early",
                            eerr)});
  }
}

}  // namespace beamlink::cnode
