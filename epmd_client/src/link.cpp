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
    : loop_(loop),
      ep_(std::move(ep)),
      request_(std::move(request)),
      timeout_(timeout),
      cbs_(std::move(cbs)) {
  (void)timer_.init(loop_, this, uv_timer_init);  // cannot fail for a timer
}

std::unique_ptr<Link> Link::open(uv_loop_t* loop, const Endpoint& ep, std::string request,
                                 std::chrono::milliseconds timeout, Callbacks cbs) {
  std::unique_ptr<Link> link(new Link(loop, ep, std::move(request), timeout, std::move(cbs)));
  link->start();
  return link;
}

std::unique_ptr<Link> Link::open_failed(uv_loop_t* loop, const Endpoint& ep, Error error,
                                        Callbacks cbs) {
  std::unique_ptr<Link> link(new Link(loop, ep, {}, std::chrono::milliseconds{0}, std::move(cbs)));
  link->defer_error(std::move(error));
  return link;
}

void Link::defer_error(Error e) noexcept {
  deferred_ = std::move(e);
  uv_timer_start(timer_.get(), on_timer, 0, 0);
}

void Link::start() noexcept {
  sockaddr_in addr{};
  if (uv_ip4_addr(ep_.host.c_str(), ep_.port, &addr) != 0)
    return defer_error(
        make_error(Errc::invalid_argument,
                   "epmd host '" + ep_.host +
                       "' is not an IPv4 address like 127.0.0.1 — resolve the name first"));
  if (int rc = tcp_.init(loop_, this, uv_tcp_init); rc != 0) return defer_error(connect_error(rc));
  auto* req = new uv_connect_t;
  int rc = uv_tcp_connect(req, tcp_.get(), reinterpret_cast<const sockaddr*>(&addr),
                          [](uv_connect_t* r, int status) {
                            // After the Link is gone (UV_ECANCELED) its handle's data is null.
                            auto* self = static_cast<Link*>(r->handle->data);
                            delete r;
                            if (self) self->connected(status);
                          });
  if (rc != 0) {
    delete req;
    return defer_error(connect_error(rc));
  }
  if (timeout_.count() > 0)
    uv_timer_start(timer_.get(), on_timer, static_cast<uint64_t>(timeout_.count()), 0);
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

void Link::stop_timer() noexcept {
  if (timer_) uv_timer_stop(timer_.get());
}

void Link::fail(Error e) noexcept {
  auto on_end = std::move(cbs_.on_end);
  cbs_ = {};
  tcp_.reset();
  timer_.reset();
  if (on_end) on_end(std::move(e));  // last: it may destroy this
}

void Link::connected(int status) noexcept {
  if (status < 0) return fail(connect_error(status));
  // The bytes travel with the request, which outlives the Link when the Link
  // is destroyed first (the write then completes with UV_ECANCELED).
  struct Write {
    uv_write_t req;
    std::string bytes;
  };
  auto* w = new Write{{}, std::move(request_)};
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  int rc = uv_write(&w->req, tcp_.stream(), &buf, 1, [](uv_write_t* r, int st) {
    auto* self = static_cast<Link*>(r->handle->data);
    delete static_cast<Write*>(r->data);
    if (!self || st == 0) return;
    self->fail(uv_error(Errc::io_error,
                        "cannot send to epmd at " + self->ep_.str() + ": " + uv_strerror(st), st));
  });
  if (rc != 0) delete w;
  if (rc == 0) rc = uv_read_start(tcp_.stream(), on_alloc, on_read);
  if (rc != 0)
    fail(uv_error(Errc::io_error, "cannot talk to epmd at " + ep_.str() + ": " + uv_strerror(rc),
                  rc));
}

void Link::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* self = static_cast<Link*>(h->data);
  *buf = uv_buf_init(self->buf_, sizeof self->buf_);
}

void Link::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<Link*>(s->data);
  if (!self) return;  // closed while libuv was reading
  if (nread > 0) {
    // Through a copy: the callback may destroy the Link, and with it cbs_.
    if (auto on_data = self->cbs_.on_data) on_data({buf->base, static_cast<std::size_t>(nread)});
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
  if (!self) return;
  if (self->deferred_.code != Errc::ok) return self->fail(std::move(self->deferred_));
  self->fail(make_error(Errc::timeout, "epmd at " + self->ep_.str() + " did not answer within " +
                                           std::to_string(self->timeout_.count()) +
                                           " ms — is a firewall dropping port " +
                                           std::to_string(self->ep_.port) + "?"));
}

}  // namespace beamlink::epmd_client::detail
