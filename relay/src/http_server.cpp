#include "relay/http_server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <unordered_map>

#include "common/digest.hpp"
#include "common/loop_owned.hpp"
#include "common/uv_handle.hpp"
#include "common/uv_util.hpp"

namespace beamlink::relay {

namespace {

// Compares the SHA-1 digests of both without an early exit, so the time
// taken reveals neither where the token differs nor its length (only
// preimage resistance matters here, which SHA-1 still has).
bool constant_time_equal(std::string_view a, std::string_view b) {
  Sha1Digest da = sha1(a), db = sha1(b);
  unsigned char diff = 0;
  for (std::size_t i = 0; i < da.size(); ++i)
    diff = static_cast<unsigned char>(diff | (da[i] ^ db[i]));
  return diff == 0;
}

// "Bearer <token>": the scheme is case-insensitive (RFC 7235 section 2.1),
// one or more spaces before the token (RFC 6750 section 2.1 has one).
std::optional<std::string_view> bearer_token(std::string_view h) {
  constexpr std::string_view scheme = "bearer";
  if (h.size() <= scheme.size() || h[scheme.size()] != ' ') return std::nullopt;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    char c = h[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != scheme[i]) return std::nullopt;
  }
  h.remove_prefix(scheme.size());
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  return h;
}

// "Authorization: Bearer <token>"; on an upgrade path also "?token=<token>".
bool authorized(const Request& req, const std::string& token, bool allow_query) {
  if (token.empty()) return true;
  auto h = req.header("authorization");
  if (h) {
    if (auto t = bearer_token(*h)) return constant_time_equal(*t, token);
  }
  if (!allow_query) return false;
  auto q = query_param(req.query, "token");
  return q && constant_time_equal(*q, token);
}

}  // namespace

// One accepted socket, owned by the server's LoopOwned set (close() retires
// it: destroyed on a later loop iteration, so it may close itself from its
// own callbacks). Responders and write requests reach it through a
// Liveness::Watch. States: Open (reading and answering) → Draining (last
// response written, half-closed, discarding input until EOF or linger) →
// Closed; or Open → Upgrading (an accepted Upgrade waits for the responses
// before it) → Closed with the socket handed to the UpgradeHandler (tcp_
// empty).
class Connection {
 public:
  Connection(HttpServer::Impl* server, uv_loop_t* loop);
  uv_stream_t* stream() { return tcp_.stream(); }
  Liveness::Watch watch() const { return alive_.watch(); }
  void start();
  void complete(std::uint64_t seq, Response r);
  void close();
  void close_when_idle();
  bool closed() const { return closed_; }
  // Closes an idle connection, answers 408 to a request that takes too
  // long (ServerOptions' timeouts).
  void check_timeouts(std::uint64_t now);

 private:
  struct Slot {
    std::uint64_t seq = 0;
    bool done = false;
    bool keep_alive = true;
    bool http10 = false;
    std::string bytes;
    bool upgrade = false;  // the hand-off point: no bytes, nothing after it
  };
  void on_read(ssize_t nread, const uv_buf_t* buf);
  void dispatch(Request& req);
  void flush();
  void drain();
  void write(std::string bytes);
  // Queues `e` as the last answer: no request after it is read.
  void answer_last(const ParseError& e);
  void pause_or_resume();
  void hand_off();

  HttpServer::Impl* server_;
  uv_loop_t* loop_;
  UvHandle<uv_tcp_t> tcp_;
  UvHandle<uv_timer_t> linger_;
  RequestParser parser_;
  std::vector<Request> parsed_;
  std::deque<Slot> slots_;
  std::uint64_t next_seq_ = 0;
  bool no_more_requests_ = false;  // error, Connection: close, upgrade or EOF
  bool eof_ = false;
  bool reading_ = false;
  bool draining_ = false;
  bool closed_ = false;
  bool close_when_idle_ = false;
  bool output_full_ = false;          // unsent bytes went over max_unsent_bytes: reading paused
  std::uint64_t last_read_ = 0;       // uv_now of the last bytes read (or the accept)
  std::uint64_t request_since_ = 0;   // uv_now when the unfinished request was first seen; 0: none
  std::uint64_t write_progress_ = 0;  // uv_now of the last write completion, or when writes queued
  std::size_t unsent_bytes() const {
    return tcp_ ? uv_stream_get_write_queue_size(tcp_.stream()) : 0;
  }
  std::string after_request_;  // bytes read after an upgrade request
  std::optional<Request> upgrade_req_;
  std::string upgrade_leftover_;
  std::function<void(Request, UvHandle<uv_tcp_t>, std::string)> upgrade_take_;
  Liveness alive_;  // what Responders and write requests watch
};

struct Responder::State {
  Connection* conn = nullptr;
  Liveness::Watch alive;  // conn is not destroyed
  std::uint64_t seq = 0;
  bool answered = false;
  ~State() {
    if (answered || !alive) return;
    conn->complete(seq, Response::error(500, "internal_error", "the handler did not answer"));
  }
};

bool Responder::respond(Response r) const {
  if (!state_ || state_->answered) return false;
  state_->answered = true;
  if (state_->alive) state_->conn->complete(state_->seq, std::move(r));
  return true;
}

bool Responder::answered() const noexcept {
  return state_ && state_->answered;
}

struct HttpServer::Impl {
  uv_loop_t* loop;
  ServerOptions options;
  Handler handler;
  UvHandle<uv_tcp_t> listener;
  int port = 0;
  LoopOwned<Connection> conns;
  // One read buffer for every connection: each read is parsed (what is
  // kept, copied) before the loop reads another socket.
  std::vector<char> read_buf = std::vector<char>(64 * 1024);
  std::map<std::string, UpgradeHandler, std::less<>> upgrades;  // path → handler
  // At max_connections: libuv holds the next accepted socket and stops
  // watching the listener until uv_accept takes it; later ones wait in the
  // kernel's backlog.
  bool accept_waiting = false;
  std::uint64_t waits = 0;
  std::uint64_t last_wait_warning = 0;  // uv_now; one warning per 10 s
  UvHandle<uv_timer_t> sweeper;         // the timeouts, for every connection
  std::uint64_t idle_closes = 0, request_timeouts = 0, send_timeouts = 0;

  explicit Impl(uv_loop_t* l) : loop(l), conns(l) {}

  void sweep() {
    std::uint64_t now = uv_now(loop);
    for (auto* c : conns.live()) c->check_timeouts(now);  // a check may close (retire) one
  }

  // Stops accepting: the listener (and the socket libuv may hold for us)
  // and the timeout sweep go.
  void stop_listening() {
    listener.reset();
    accept_waiting = false;
    sweeper.reset();
  }

  // A closed connection: destroyed on a later iteration (we may be inside
  // its callback); its place goes to a waiting one.
  void remove(Connection* c) {
    if (!conns.contains(c)) return;
    conns.retire(c);
    if (accept_waiting && listener && conns.size() < options.max_connections) {
      accept_waiting = false;
      accept_one();
    }
  }

  void on_connection() {
    if (conns.size() >= options.max_connections) {
      if (!accept_waiting) {
        ++waits;
        std::uint64_t now = uv_now(loop);
        if (last_wait_warning == 0 || now - last_wait_warning >= 10000) {
          last_wait_warning = now;
          spdlog::warn(
              "relay: {} connections open, the most allowed (--relay-max-connections): new ones "
              "wait until one closes ({} such waits so far)",
              conns.size(), waits);
        }
      }
      accept_waiting = true;
      return;
    }
    accept_one();
  }

  void accept_one() {
    auto c = std::make_unique<Connection>(this, loop);
    if (!c->stream() || uv_accept(listener.stream(), c->stream()) != 0) return;  // closes it
    conns.add(std::move(c))->start();
  }
};

Connection::Connection(HttpServer::Impl* server, uv_loop_t* loop)
    : server_(server), loop_(loop), parser_(server->options.limits) {
  (void)tcp_.init(loop, this, uv_tcp_init);  // fails only for an invalid loop
}

void Connection::start() {
  uv_tcp_nodelay(tcp_.get(), 1);
  last_read_ = uv_now(loop_);
  pause_or_resume();
}

void Connection::check_timeouts(std::uint64_t now) {
  if (closed_) return;
  const auto& o = server_->options;
  // Responses queued that the client does not take.
  if (unsent_bytes() > 0 &&
      now - write_progress_ >= static_cast<std::uint64_t>(o.send_timeout.count())) {
    ++server_->send_timeouts;
    close();
    return;
  }
  if (draining_ || no_more_requests_) return;  // draining: the linger timer ends it
  if (request_since_ != 0 &&
      now - request_since_ >= static_cast<std::uint64_t>(o.request_timeout.count())) {
    ++server_->request_timeouts;
    answer_last({408, "request_timeout",
                 "the request was not complete within " +
                     std::to_string(o.request_timeout.count()) + " ms"});
    flush();
    pause_or_resume();
    return;
  }
  // Idle: nothing read for idle_timeout, no request unanswered or unfinished,
  // nothing left to write.
  if (request_since_ == 0 && slots_.empty() && uv_stream_get_write_queue_size(tcp_.stream()) == 0 &&
      now - last_read_ >= static_cast<std::uint64_t>(o.idle_timeout.count())) {
    ++server_->idle_closes;
    close();
  }
}

void Connection::answer_last(const ParseError& e) {
  no_more_requests_ = true;
  slots_.push_back(Slot{next_seq_++, true, false, false,
                        serialize(Response::error(e.status, e.error, e.reason), false)});
}

void Connection::pause_or_resume() {
  if (closed_) return;
  // Unsent responses above the limit pause reading; below half of it resume
  // (the hysteresis keeps a steady reader from flapping).
  const std::size_t unsent = unsent_bytes(), limit = server_->options.max_unsent_bytes;
  if (unsent > limit)
    output_full_ = true;
  else if (unsent <= limit / 2)
    output_full_ = false;
  bool want = draining_ || (!no_more_requests_ && !output_full_ &&
                            slots_.size() < server_->options.max_pipeline);
  if (want && !reading_) {
    reading_ = uv_read_start(
                   tcp_.stream(),
                   [](uv_handle_t* h, size_t, uv_buf_t* buf) {
                     auto& b = static_cast<Connection*>(h->data)->server_->read_buf;
                     *buf = uv_buf_init(b.data(), static_cast<unsigned>(b.size()));
                   },
                   [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
                     auto* self = static_cast<Connection*>(s->data);
                     if (self) self->on_read(nread, buf);
                   }) == 0;
  } else if (!want && reading_) {
    uv_read_stop(tcp_.stream());
    reading_ = false;
  }
}

// A handler's answer may close this connection: it is then retired, still
// valid until the callback returns, and every step checks closed_.
void Connection::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (nread < 0) {
    eof_ = true;
    uv_read_stop(tcp_.stream());
    reading_ = false;
    if (draining_ || nread != UV_EOF) {
      close();
      return;
    }
    if (!no_more_requests_) {
      no_more_requests_ = true;
      if (auto err = parser_.finish()) answer_last(*err);
    }
    flush();
    return;
  }
  if (nread == 0 || draining_ || no_more_requests_) return;
  last_read_ = uv_now(loop_);
  auto fed =
      parser_.feed(std::span<const char>(buf->base, static_cast<std::size_t>(nread)), parsed_);
  if (!parser_.in_message())
    request_since_ = 0;
  else if (request_since_ == 0 || !parsed_.empty())  // a new request began in these bytes
    request_since_ = last_read_;
  if (!fed.error && fed.consumed < static_cast<std::size_t>(nread) && !parsed_.empty() &&
      parsed_.back().upgrade) {
    after_request_.assign(buf->base + fed.consumed, static_cast<std::size_t>(nread) - fed.consumed);
  }
  for (auto& req : parsed_) {
    if (closed_ || no_more_requests_) break;
    dispatch(req);
  }
  parsed_.clear();
  if (fed.error && !no_more_requests_) answer_last(*fed.error);
  flush();
  pause_or_resume();
}

void Connection::dispatch(Request& req) {
  bool keep = req.keep_alive && !req.upgrade && !close_when_idle_;
  std::uint64_t seq = next_seq_++;
  slots_.push_back(Slot{seq, false, keep, req.http_major == 1 && req.http_minor == 0, {}});
  if (!keep) no_more_requests_ = true;
  auto up = server_->upgrades.find(req.path);
  bool upgrade_path = up != server_->upgrades.end();
  if (!authorized(req, server_->options.bearer_token, upgrade_path)) {
    Response r = Response::error(401, "unauthorized", "missing or wrong bearer token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    complete(seq, std::move(r));
    return;
  }
  if (upgrade_path) {
    std::optional<Response> refusal;
    try {
      if (up->second.check) refusal = up->second.check(req);
    } catch (const std::exception& e) {
      refusal = Response::error(500, "internal_error", e.what());
    } catch (...) {
      refusal = Response::error(500, "internal_error", "the upgrade check threw");
    }
    if (!refusal && !req.upgrade) {
      refusal = Response::error(400, "bad_request",
                                req.path + " expects an Upgrade request (Connection: upgrade)");
    }
    if (refusal || !up->second.take) {
      complete(seq, refusal ? std::move(*refusal)
                            : Response::error(500, "internal_error", "no upgrade taker"));
      return;
    }
    // Accepted: the slot is the hand-off point, reached once the responses
    // before it are queued (flush). The request is the last one parsed.
    slots_.back().done = true;
    slots_.back().upgrade = true;
    upgrade_take_ = up->second.take;
    upgrade_req_ = std::move(req);
    upgrade_leftover_ = std::move(after_request_);
    return;
  }
  auto state = std::make_shared<Responder::State>();
  state->conn = this;
  state->alive = alive_.watch();
  state->seq = seq;
  Responder responder(std::move(state));
  try {
    server_->handler(req, responder);
  } catch (const std::exception& e) {
    responder.respond(Response::error(500, "internal_error", e.what()));
  } catch (...) {
    responder.respond(Response::error(500, "internal_error", "the handler threw"));
  }
}

void Connection::complete(std::uint64_t seq, Response r) {
  if (closed_) return;
  for (auto& s : slots_) {
    if (s.seq == seq && !s.done) {
      s.done = true;
      s.bytes = serialize(r, s.keep_alive, s.http10);
      break;
    }
  }
  flush();
  pause_or_resume();
}

void Connection::flush() {
  while (!closed_ && !draining_ && !slots_.empty() && slots_.front().done) {
    if (slots_.front().upgrade) {
      hand_off();
      return;
    }
    Slot s = std::move(slots_.front());
    slots_.pop_front();
    write(std::move(s.bytes));
    if (!s.keep_alive) {
      drain();
      return;
    }
  }
  if (closed_ || draining_) return;
  if (slots_.empty() && (eof_ || close_when_idle_)) drain();
}

// The socket goes to the UpgradeHandler; this connection is closed without
// closing it. Pending writes finish on the socket, before the new owner's.
void Connection::hand_off() {
  if (reading_) uv_read_stop(tcp_.stream());
  reading_ = false;
  UvHandle<uv_tcp_t> tcp = std::move(tcp_);
  tcp->data = nullptr;
  auto take = std::move(upgrade_take_);
  Request req = std::move(*upgrade_req_);
  upgrade_req_.reset();
  std::string leftover = std::move(upgrade_leftover_);
  close();
  take(std::move(req), std::move(tcp), std::move(leftover));
}

void Connection::write(std::string bytes) {
  // Most responses fit the socket buffer: written now, without a write
  // request (whose completion makes libuv re-arm the socket in epoll, one
  // epoll_ctl per response). uv_try_write refuses while earlier writes are
  // queued, so the order holds.
  uv_buf_t now = uv_buf_init(bytes.data(), static_cast<unsigned>(bytes.size()));
  int n = uv_try_write(tcp_.stream(), &now, 1);
  if (n == static_cast<int>(bytes.size())) return;
  if (n < 0 && n != UV_EAGAIN) return close();
  if (n > 0) bytes.erase(0, static_cast<std::size_t>(n));
  // The write callback finds the connection through a Liveness::Watch, not
  // the handle: after an upgrade the handle's data belongs to its new owner.
  struct WriteReq {
    uv_write_t req;
    std::string bytes;
    Connection* conn;
    Liveness::Watch alive;
  };
  if (unsent_bytes() == 0) write_progress_ = uv_now(loop_);  // the send timeout starts now
  auto* w = new WriteReq{{}, std::move(bytes), this, alive_.watch()};
  uv_buf_t b = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  int rc = uv_write(&w->req, tcp_.stream(), &b, 1, [](uv_write_t* req, int status) {
    std::unique_ptr<WriteReq> wr(reinterpret_cast<WriteReq*>(req));
    if (!wr->alive) return;
    Connection* c = wr->conn;
    if (status < 0) return c->close();
    if (c->closed_ || !c->tcp_) return;  // handed off: the new owner's writes now
    c->write_progress_ = uv_now(c->loop_);
    c->pause_or_resume();  // the client took bytes: reading may resume
  });
  if (rc != 0) {
    delete w;
    close();
  }
}

// The last response is queued: half-close (FIN after the queued writes), then
// discard input until the client closes, or linger passes.
void Connection::drain() {
  if (draining_ || closed_) return;
  draining_ = true;
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, tcp_.stream(), [](uv_shutdown_t* r, int status) {
        auto* self = static_cast<Connection*>(r->handle->data);
        delete r;
        if (self && (status < 0 || self->eof_)) self->close();
      }) != 0) {
    delete req;
    close();
    return;
  }
  (void)linger_.init(loop_, this, uv_timer_init);
  uv_timer_start(
      linger_.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<Connection*>(t->data)) self->close();
      },
      static_cast<std::uint64_t>(server_->options.linger.count()), 0);
  pause_or_resume();
}

void Connection::close_when_idle() {
  close_when_idle_ = true;
  no_more_requests_ = true;
  flush();
  pause_or_resume();
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  tcp_.reset();  // empty once handed to an UpgradeHandler; shutdown callbacks see data == nullptr
  linger_.reset();
  slots_.clear();
  server_->remove(this);
}

// HttpServer ----------------------------------------------------------------

HttpServer::HttpServer(uv_loop_t* loop, ServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(loop)) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

// Every connection is destroyed with impl_ (its handles close then).
HttpServer::~HttpServer() = default;

Result<void> HttpServer::listen() {
  auto& s = *impl_;
  if (s.listener) return make_error(Errc::already_exists, "the relay already listens");
  sockaddr_storage addr{};
  bool v6 = s.options.host.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(s.options.host.c_str(), s.options.port,
                            reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(s.options.host.c_str(), s.options.port,
                            reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) {
    return uv_error(Errc::invalid_argument,
                    "relay listen address \"" + s.options.host +
                        "\" is not an IP literal — use e.g. 127.0.0.1 or ::1",
                    rc);
  }
  std::string where = s.options.host + ":" + std::to_string(s.options.port);
  rc = s.listener.init(s.loop, impl_.get(), uv_tcp_init);
  if (rc == 0) rc = uv_tcp_bind(s.listener.get(), reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(s.listener.stream(), 511, [](uv_stream_t* l, int status) {
      auto* impl = static_cast<Impl*>(l->data);
      if (impl && status == 0) impl->on_connection();
    });
  }
  if (rc != 0) {
    s.listener.reset();
    if (rc == UV_EADDRINUSE) {
      return uv_error(
          Errc::already_exists,
          "relay cannot listen on " + where + ": address in use — choose another RELAY_LISTEN", rc);
    }
    return uv_error(Errc::io_error, "relay cannot listen on " + where + ": " + uv_strerror(rc), rc);
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(s.listener.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  s.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  auto shorter =
      std::min({s.options.idle_timeout, s.options.request_timeout, s.options.send_timeout}).count();
  auto every = static_cast<std::uint64_t>(std::clamp<std::int64_t>(shorter / 4, 10, 1000));
  (void)s.sweeper.init(s.loop, &s, uv_timer_init);
  uv_timer_start(
      s.sweeper.get(),
      [](uv_timer_t* t) {
        if (auto* impl = static_cast<HttpServer::Impl*>(t->data)) impl->sweep();
      },
      every, every);
  uv_unref(s.sweeper.handle());  // does not keep the loop alive
  return {};
}

Result<void> HttpServer::adopt(int fd) {
  auto& s = *impl_;
  auto c = std::make_unique<Connection>(&s, s.loop);
  if (!c->stream())
    return make_error(Errc::io_error, "relay: cannot make a handle to adopt a socket");
  // A failed uv_tcp_open leaves the fd out of the handle: closing it does
  // not close the fd.
  int rc = uv_tcp_open(reinterpret_cast<uv_tcp_t*>(c->stream()), fd);
  if (rc != 0)
    return uv_error(Errc::io_error,
                    "relay cannot serve socket " + std::to_string(fd) + ": " + uv_strerror(rc), rc);
  s.conns.add(std::move(c))->start();
  return {};
}

int HttpServer::port() const {
  return impl_->port;
}

void HttpServer::close() {
  impl_->stop_listening();
  for (auto* c : impl_->conns.live()) c->close_when_idle();
}

void HttpServer::on_upgrade(std::string path, UpgradeHandler handler) {
  impl_->upgrades[std::move(path)] = std::move(handler);
}

std::size_t HttpServer::connection_count() const {
  return impl_->conns.size();
}

std::uint64_t HttpServer::connection_waits() const {
  return impl_->waits;
}

std::uint64_t HttpServer::idle_closes() const {
  return impl_->idle_closes;
}

std::uint64_t HttpServer::request_timeouts() const {
  return impl_->request_timeouts;
}

std::uint64_t HttpServer::send_timeouts() const {
  return impl_->send_timeouts;
}

void HttpServer::write_metrics(MetricsWriter& m) const {
  m.gauge("beamlink_relay_http_connections", "Open HTTP connections.",
          static_cast<double>(connection_count()));
  m.counter("beamlink_relay_http_connection_waits_total",
            "Times new HTTP connections waited in the listen backlog because the most allowed "
            "were open (--relay-max-connections).",
            connection_waits());
  m.family("beamlink_relay_http_timeouts_total", MetricsWriter::Type::counter,
           "HTTP connections closed after idling, and requests answered 408 for taking too "
           "long.");
  m.sample("beamlink_relay_http_timeouts_total", idle_closes(), {{"kind", "idle"}});
  m.sample("beamlink_relay_http_timeouts_total", request_timeouts(), {{"kind", "request"}});
  m.sample("beamlink_relay_http_timeouts_total", send_timeouts(), {{"kind", "send"}});
}

}  // namespace beamlink::relay
