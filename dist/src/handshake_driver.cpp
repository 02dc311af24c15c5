// HandshakeInitiatorCore on a uv_tcp_t ("Distribution Handshake" in the ERTS
// user's guide): connect, send_name, recv_status, recv_challenge,
// send_challenge_reply, recv_challenge_ack, all under one deadline.
#include "handshake_driver.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/uv_util.hpp"

namespace beamlink::dist {

namespace {

struct WriteReq {
  uv_write_t req{};
  std::string bytes;
};

}  // namespace

HandshakeDriver::HandshakeDriver(uv_loop_t* loop, HandshakeInitiatorCore core, sockaddr_in addr,
                                 std::chrono::milliseconds deadline, std::string where, Done done)
    : loop_(loop),
      core_(std::move(core)),
      addr_(addr),
      deadline_(deadline),
      where_(std::move(where)),
      done_(std::move(done)) {}

HandshakeDriver::~HandshakeDriver() = default;  // the handles close with their owners

void HandshakeDriver::start() {
  auto fail_later = [this](Error e) {
    finished_ = true;
    defer(loop_, alive_.watch(), [this, e = std::move(e)]() mutable {
      auto done = std::move(done_);
      tcp_.reset();
      timer_.reset();
      done(std::move(e));
    });
  };
  if (int rc = tcp_.init(loop_, this, uv_tcp_init); rc != 0)
    return fail_later(uv_error(Errc::io_error, where_ + ": uv_tcp_init: " + uv_strerror(rc), rc));
  if (int rc = timer_.init(loop_, this, uv_timer_init); rc != 0)
    return fail_later(uv_error(Errc::io_error, where_ + ": uv_timer_init: " + uv_strerror(rc), rc));
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<HandshakeDriver*>(t->data);
        if (!self || self->finished_) return;
        if (!self->tcp_connected_)
          return self->finish(
              posix_error(Errc::timeout,
                          self->where_ + ": the TCP connect did not complete within " +
                              std::to_string(self->deadline_.count()) +
                              " ms — is a firewall dropping the port, or is the node overloaded?",
                          ETIMEDOUT));
        self->core_.on_timeout(self->deadline_);
        self->check();
      },
      static_cast<std::uint64_t>(deadline_.count()), 0);
  auto* req = new uv_connect_t;
  int rc = uv_tcp_connect(req, tcp_.get(), reinterpret_cast<const sockaddr*>(&addr_),
                          [](uv_connect_t* r, int status) {
                            auto* self = static_cast<HandshakeDriver*>(r->handle->data);
                            delete r;
                            if (self && !self->finished_) self->connected(status);
                          });
  if (rc != 0) {
    delete req;
    return fail_later(uv_error(Errc::io_error, where_ + ": connect: " + uv_strerror(rc), rc));
  }
}

void HandshakeDriver::connected(int status) {
  if (status == UV_ECONNREFUSED)
    return finish(uv_error(Errc::connection_refused,
                           where_ + ": nothing listens there — the node is down or epmd's entry "
                                    "is stale",
                           status));
  if (status != 0)
    return finish(uv_error(Errc::io_error, where_ + ": " + uv_strerror(status), status));
  tcp_connected_ = true;
  uv_tcp_nodelay(tcp_.get(), 1);
  std::string name = core_.start();
  if (core_.failed()) return check();
  send(std::move(name));
  if (core_.failed()) return check();
  if (int rc = uv_read_start(tcp_.stream(), on_alloc, on_read); rc != 0)
    return finish(uv_error(Errc::io_error, where_ + ": read: " + uv_strerror(rc), rc));
}

void HandshakeDriver::send(std::string bytes) {
  if (bytes.empty()) return;
  auto* w = new WriteReq;
  w->bytes = std::move(bytes);
  uv_buf_t b = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  int rc = uv_write(&w->req, tcp_.stream(), &b, 1, [](uv_write_t* req, int status) {
    std::unique_ptr<WriteReq> own(reinterpret_cast<WriteReq*>(req));
    auto* self = static_cast<HandshakeDriver*>(req->handle->data);
    if (!self || self->finished_ || status == 0 || status == UV_ECANCELED) return;
    if (status == UV_EPIPE || status == UV_ECONNRESET)
      self->core_.on_closed();
    else
      self->core_.on_io_error(-status);
    self->check();
  });
  if (rc != 0) {
    delete w;
    core_.on_io_error(-rc);
  }
}

void HandshakeDriver::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<HandshakeDriver*>(h->data);
  std::size_t want = self ? self->core_.bytes_wanted() : 0;
  if (want == 0) want = 1;
  if (want > sizeof self->buf_) want = sizeof self->buf_;
  *buf = uv_buf_init(self->buf_, static_cast<unsigned>(want));
}

void HandshakeDriver::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<HandshakeDriver*>(s->data);
  if (!self || self->finished_ || nread == 0 || nread == UV_ENOBUFS) return;
  if (nread < 0) {
    if (nread == UV_EOF || nread == UV_ECONNRESET)
      self->core_.on_closed();
    else
      self->core_.on_io_error(static_cast<int>(-nread));
    return self->check();
  }
  std::string out = self->core_.feed(std::span<const char>(buf->base, static_cast<size_t>(nread)));
  self->send(std::move(out));
  self->check();
}

void HandshakeDriver::check() {
  if (finished_) return;
  if (core_.done()) {
    uv_read_stop(tcp_.stream());
    uv_os_fd_t fd = -1;
    int rc = uv_fileno(tcp_.handle(), &fd);
    int copy = rc == 0 ? ::fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (copy < 0)
      return finish(posix_error(Errc::io_error,
                                where_ + ": cannot take over the socket: " + std::strerror(errno),
                                errno));
    DialedPeer p;
    p.fd = copy;
    p.version = core_.findings().peer_version == 5 ? 5 : core_.version();
    p.flags = core_.findings().peer_flags;
    p.name = core_.findings().peer_name;
    return finish(std::move(p));
  }
  if (core_.failed()) {
    Error e = core_.error();
    e.message = where_ + ": " + e.message;
    finish(std::move(e));
  }
}

void HandshakeDriver::finish(Result<DialedPeer> r) {
  finished_ = true;
  timer_.reset();
  tcp_.reset();  // closes our descriptor; a handed-over socket lives on in its copy
  auto done = std::move(done_);
  done(std::move(r));  // may destroy this driver: nothing after it
}

}  // namespace beamlink::dist
