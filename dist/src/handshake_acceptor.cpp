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

namespace beamlink::dist {

struct HandshakeAcceptor::Shared {
  ei_cnode ec;
  int listen_fd;
  unsigned timeout_ms;
  Callback cb;
  std::mutex mutex;  // held while a callback runs, and by stop()
  bool stopping = false;
  ~Shared() { ::close(listen_fd); }  // the last thread out closes the socket
  bool stopped() {
    std::lock_guard lock(mutex);
    return stopping;
  }
  // Delivers unless stopped; after stop() returned nothing is delivered.
  bool deliver(Accepted a) {
    std::lock_guard lock(mutex);
    if (stopping) return false;
    cb(std::move(a));
    return true;
  }
};

HandshakeAcceptor::HandshakeAcceptor(const ei_cnode& ec, int listen_fd, int threads,
                                     unsigned timeout_ms, Callback cb)
    : shared_(new Shared{ec, listen_fd, timeout_ms, std::move(cb), {}, false}), threads_(threads) {}

HandshakeAcceptor::~HandshakeAcceptor() {
  stop();
}

void HandshakeAcceptor::start() {
  for (int i = 0; i < threads_; ++i) std::thread([s = shared_] { run(s); }).detach();
}

void HandshakeAcceptor::stop() {
  {
    std::lock_guard lock(shared_->mutex);
    if (shared_->stopping) return;
    shared_->stopping = true;
  }
  // Wakes threads blocked in select()/accept() on the listen socket.
  ::shutdown(shared_->listen_fd, SHUT_RDWR);
}

void HandshakeAcceptor::run(const std::shared_ptr<Shared>& shared) {
  ei_cnode local = shared->ec;
  std::chrono::milliseconds backoff{0};
  while (!shared->stopped()) {
    ErlConnect conp{};
    errno = 0;
    // The timeout bounds both the wait for a connection and its handshake.
    int fd = ei_accept_tmo(&local, shared->listen_fd, &conp, shared->timeout_ms);
    int sys = errno;
    if (fd >= 0) {
      backoff = std::chrono::milliseconds(0);
      if (!shared->deliver(Accepted{fd, conp.nodename, {}})) {
        ::close(fd);
        return;
      }
      continue;
    }
    if (shared->stopped()) return;
    int eerr = erl_errno;
    if (eerr == ETIMEDOUT) continue;  // no one connected in this period
    char ip[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, conp.ipadr, ip, sizeof ip);
    bool known_ip = ip[0] && std::strcmp(ip, "0.0.0.0") != 0;
    if (eerr == EIO && known_ip) {
      // The TCP connection was accepted and the handshake failed.
      (void)shared->deliver(
          Accepted{-1,
                   {},
                   ei_error(Errc::handshake_failed,
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
    (void)shared->deliver(
        Accepted{-1,
                 {},
                 posix_error(Errc::io_error,
                             std::string("accepting a distribution connection failed: ") +
                                 std::strerror(why) + " (retrying)",
                             why)});
    backoff = std::min(std::max(backoff * 2, std::chrono::milliseconds(50)),
                       std::chrono::milliseconds(2000));
    std::this_thread::sleep_for(backoff);  // a worker thread's retry pause, not a test sync
  }
}

}  // namespace beamlink::dist
