// ei's socket callbacks over poll(); see ei_socket.hpp.
#include "ei_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace beamlink::dist {

namespace {

using Clock = std::chrono::steady_clock;

thread_local HandshakeRecording* t_recording = nullptr;

int fd_of(void* ctx) {
  return static_cast<int>(reinterpret_cast<std::intptr_t>(ctx));
}

void* ctx_of(int fd) {
  return reinterpret_cast<void*>(static_cast<std::intptr_t>(fd));
}

// ei's timeout (EI_SCLBK_INF_TMO: none), bounded by the recording's deadline.
// -1 waits forever (poll's convention).
int effective_ms(unsigned tmo) {
  long long ms = tmo == EI_SCLBK_INF_TMO ? -1 : static_cast<long long>(tmo);
  if (t_recording) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(t_recording->deadline() - Clock::now())
                    .count();
    if (left < 0) left = 0;
    if (ms < 0 || left < ms) ms = left;
  }
  return ms > INT32_MAX ? INT32_MAX : static_cast<int>(ms);
}

// 0: ready; ETIMEDOUT; or errno.
int wait_for(int fd, short events, unsigned tmo) {
  int ms = effective_ms(tmo);
  auto until = ms < 0 ? Clock::time_point::max() : Clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, ms);
    if (rc > 0) return 0;
    if (rc == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
    if (ms >= 0) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
      ms = left > 0 ? static_cast<int>(left) : 0;
    }
  }
}

void set_nonblocking(int fd, bool on) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return;
  ::fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

int cb_socket(void** ctx, void*) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  *ctx = ctx_of(fd);
  return 0;
}

int cb_close(void* ctx) {
  return ::close(fd_of(ctx)) == 0 ? 0 : errno;
}

int cb_listen(void* ctx, void* addr, int* len, int backlog) {
  int fd = fd_of(ctx);
  int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, static_cast<sockaddr*>(addr), static_cast<socklen_t>(*len)) != 0) return errno;
  socklen_t l = static_cast<socklen_t>(*len);
  if (::getsockname(fd, static_cast<sockaddr*>(addr), &l) != 0) return errno;
  *len = static_cast<int>(l);
  return ::listen(fd, backlog) == 0 ? 0 : errno;
}

int cb_accept(void** ctx, void* addr, int* len, unsigned tmo) {
  int fd = fd_of(*ctx);
  if (int rc = wait_for(fd, POLLIN, tmo); rc != 0) return rc;
  socklen_t l = static_cast<socklen_t>(*len);
  int c = ::accept4(fd, static_cast<sockaddr*>(addr), &l, SOCK_CLOEXEC);
  if (c < 0) return errno;
  *len = static_cast<int>(l);
  *ctx = ctx_of(c);
  return 0;
}

int cb_connect(void* ctx, void* addr, int len, unsigned tmo) {
  int fd = fd_of(ctx);
  set_nonblocking(fd, true);
  int err = 0;
  if (::connect(fd, static_cast<sockaddr*>(addr), static_cast<socklen_t>(len)) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      err = wait_for(fd, POLLOUT, tmo);
      if (err == 0) {
        socklen_t l = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0) err = errno;
      }
    }
  }
  set_nonblocking(fd, false);  // ei expects blocking mode between callbacks
  return err;
}

int cb_write(void* ctx, const char* buf, ssize_t* len, unsigned tmo) {
  int fd = fd_of(ctx);
  for (;;) {
    if (int rc = wait_for(fd, POLLOUT, tmo); rc != 0) return rc;
    ssize_t n = ::send(fd, buf, static_cast<size_t>(*len), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      *len = n;
      return 0;
    }
    if (errno != EAGAIN && errno != EINTR) return errno;
  }
}

int cb_read(void* ctx, char* buf, ssize_t* len, unsigned tmo) {
  int fd = fd_of(ctx);
  for (;;) {
    if (int rc = wait_for(fd, POLLIN, tmo); rc != 0) return rc;
    ssize_t n = ::recv(fd, buf, static_cast<size_t>(*len), MSG_DONTWAIT);
    if (n >= 0) {
      if (t_recording && n > 0) t_recording->append(buf, static_cast<std::size_t>(n));
      *len = n;
      return 0;
    }
    if (errno != EAGAIN && errno != EINTR) return errno;
  }
}

int cb_header_size(void*, int* sz) {
  *sz = 2;  // the handshake's 2-byte length prefix
  return 0;
}

int cb_complete(void*) {
  return 0;
}

int cb_get_fd(void* ctx, int* fd) {
  *fd = fd_of(ctx);
  return 0;
}

ei_socket_callbacks g_callbacks = {
    EI_SCLBK_FLG_FULL_IMPL,
    cb_socket,
    cb_close,
    cb_listen,
    cb_accept,
    cb_connect,
    nullptr,  // writev: ei falls back to write
    cb_write,
    cb_read,
    cb_header_size,
    cb_complete,
    cb_complete,
    cb_get_fd,
};

std::uint64_t get_be(const std::string& s, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

}  // namespace

ei_socket_callbacks* poll_socket_callbacks() {
  return &g_callbacks;
}

HandshakeRecording::HandshakeRecording(std::chrono::steady_clock::time_point deadline)
    : deadline_(deadline) {
  t_recording = this;
}

HandshakeRecording::~HandshakeRecording() {
  t_recording = nullptr;
}

std::optional<PeerChallenge> parse_received_challenge(const std::string& received) {
  std::size_t pos = 0;
  while (pos + 2 <= received.size()) {
    auto len = static_cast<std::size_t>(get_be(received, pos, 2));
    if (len == 0 || pos + 2 + len > received.size()) return std::nullopt;
    std::string msg = received.substr(pos + 2, len);
    pos += 2 + len;
    constexpr std::size_t kFixed = 1 + 8 + 4 + 4 + 2;
    if (msg[0] != 'N' || msg.size() < kFixed) continue;
    if (msg.size() != kFixed + get_be(msg, kFixed - 2, 2)) return std::nullopt;
    PeerChallenge c;
    c.flags = get_be(msg, 1, 8);
    c.name = msg.substr(kFixed);
    return c;
  }
  return std::nullopt;
}

}  // namespace beamlink::dist
