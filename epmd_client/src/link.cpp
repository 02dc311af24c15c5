#include "link.hpp"

#include <utility>

namespace beamlink::epmd_client::detail {

namespace {

std::string start_hint(const Endpoint& ep) {
  if (ep.port == default_epmd_port) return "`epmd -daemon`";
  return "`epmd -port " + std::to_string(ep.port) + " -daemon`";
}

}  // namespace

Link::Link(uv_loop_t* loop, Endpoint ep, std::string request, std::chrono::milliseconds timeout,
           Callbacks cbs)
    : ep_(std::move(ep)), request_(std::move(request)), timeout_(timeout), cbs_(std::move(cbs)) {
  uv_tcp_init(loop, &tcp_);  // fails only for bad flags
  uv_timer_init(loop, &timer_);
  tcp_.data = this;
  timer_.data = this;
  open_handles_ = 2;
}

Link* Link::open(uv_loop_t* loop, const Endpoint& ep, std::string request,
                 std::chrono::milliseconds timeout, Callbacks cbs) {
  auto* link = new Link(loop, ep, std::move(request), timeout, std::move(cbs));
  link->start();
  return link;
}

Link* Link::open_failed(uv_loop_t* loop, const Endpoint& ep, Error error, Callbacks cbs) {
  auto* link = new Link(loop, ep, {}, std::chrono::milliseconds{0}, std::move(cbs));
  link->deferred_ = std::move(error);
  uv_timer_start(&link->timer_, on_timer, 0, 0);
  return link;
}

void Link::start() noexcept {
  sockaddr_in addr{};
  if (uv_ip4_addr(ep_.host.c_str(), ep_.port, &addr) != 0) {
    deferred_ = make_error(Errc::invalid_argument,
                           "epmd host '" + ep_.host +
                               "' is not an IPv4 address like 127.0.0.1 — resolve the name first");
    uv_timer_start(&timer_, on_timer, 0, 0);
    return;
  }
  connect_req_.data = this;
  if (int rc = uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&addr),
                              on_connect);
      rc != 0) {
    deferred_ = connect_error(rc);
    uv_timer_start(&timer_, on_timer, 0, 0);
    return;
  }
  if (timeout_.count() > 0)
    uv_timer_start(&timer_, on_timer, static_cast<uint64_t>(timeout_.count()), 0);
}

Error Link::connect_error(int status) const {
  if (status == UV_ECONNREFUSED)
    return uv_error(Errc::connection_refused,
                    "no epmd at " + ep_.str() + " — start it with " + start_hint(ep_), status);
  return uv_error(Errc::io_error,
                  "cannot connect to epmd at " + ep_.str() + ": " + uv_strerror(status) +
                      " — check the address and that the host is reachable",
                  status);
}

void Link::close() noexcept {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_closed);
}

void Link::stop_timer() noexcept {
  if (!closing_) uv_timer_stop(&timer_);
}

void Link::fail(Error e) noexcept {
  auto on_end = std::move(cbs_.on_end);
  close();
  if (on_end) on_end(std::move(e));
}

void Link::on_connect(uv_connect_t* req, int status) noexcept {
  auto* self = static_cast<Link*>(req->data);
  if (self->closing_) return;  // UV_ECANCELED after close()
  if (status < 0) return self->fail(self->connect_error(status));
  uv_buf_t buf = uv_buf_init(self->request_.data(), static_cast<unsigned>(self->request_.size()));
  self->write_req_.data = self;
  int rc =
      uv_write(&self->write_req_, reinterpret_cast<uv_stream_t*>(&self->tcp_), &buf, 1, on_write);
  if (rc == 0) rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&self->tcp_), on_alloc, on_read);
  if (rc != 0)
    self->fail(uv_error(Errc::io_error,
                        "cannot talk to epmd at " + self->ep_.str() + ": " + uv_strerror(rc), rc));
}

void Link::on_write(uv_write_t* req, int status) noexcept {
  auto* self = static_cast<Link*>(req->data);
  if (self->closing_ || status == 0) return;
  self->fail(uv_error(Errc::io_error,
                      "cannot send to epmd at " + self->ep_.str() + ": " + uv_strerror(status),
                      status));
}

void Link::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* self = static_cast<Link*>(h->data);
  *buf = uv_buf_init(self->buf_, sizeof self->buf_);
}

void Link::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<Link*>(s->data);
  if (self->closing_) return;
  if (nread > 0) {
    if (self->cbs_.on_data) self->cbs_.on_data({buf->base, static_cast<std::size_t>(nread)});
    return;
  }
  if (nread == 0) return;  // EAGAIN
  const int err = static_cast<int>(nread);
  if (err == UV_EOF)
    return self->fail(uv_error(Errc::connection_closed,
                               "epmd at " + self->ep_.str() + " closed the connection", err));
  self->fail(uv_error(err == UV_ECONNRESET ? Errc::connection_closed : Errc::io_error,
                      "connection to epmd at " + self->ep_.str() + " failed: " + uv_strerror(err),
                      err));
}

void Link::on_timer(uv_timer_t* t) noexcept {
  auto* self = static_cast<Link*>(t->data);
  if (self->closing_) return;
  if (self->deferred_.code != Errc::ok) return self->fail(std::move(self->deferred_));
  self->fail(make_error(Errc::timeout, "epmd at " + self->ep_.str() + " did not answer within " +
                                           std::to_string(self->timeout_.count()) +
                                           " ms — is a firewall dropping port " +
                                           std::to_string(self->ep_.port) + "?"));
}

void Link::on_closed(uv_handle_t* h) noexcept {
  auto* self = static_cast<Link*>(h->data);
  if (--self->open_handles_ == 0) delete self;
}

}  // namespace beamlink::epmd_client::detail
